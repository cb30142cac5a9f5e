package queue_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Mailer is a dependency a task needs: built once at startup, shared by
// every execution.
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// WelcomeEmail gets its Mailer from the worker instead of a global. The
// exported fields are the payload; mailer is unexported, so it never
// travels: the factory registered with queue.RegisterFactory sets it.
type WelcomeEmail struct {
	queue.TaskBase
	To, Name string

	mailer Mailer
}

func (*WelcomeEmail) Config() queue.Config { return queue.Config{Queue: "emails", MaxRetries: 5} }

func (t *WelcomeEmail) Handle(ctx context.Context) (bool, error) {
	if err := t.mailer.Send(ctx, t.To, "Welcome", "Hello, "+t.Name+"!"); err != nil {
		return false, err
	}
	return true, nil
}

// printMailer stands in for an SMTP client.
type printMailer struct{ from string }

func (m printMailer) Send(ctx context.Context, to, subject, body string) error {
	fmt.Printf("from %s to %s: %s: %s\n", m.from, to, subject, body)
	return nil
}

// A worker builds each task with its dependencies: RegisterFactory's
// function sets them, and the job's payload fills the exported fields of a
// copy made for every execution.
func ExampleRegisterFactory() {
	mailer := printMailer{from: "hello@example.com"} // e.g. an SMTP client from the app's config

	reg := queue.NewRegistry()
	err := queue.RegisterFactory(reg, func() *WelcomeEmail { return &WelcomeEmail{mailer: mailer} })
	if err != nil {
		log.Fatal(err)
	}

	var adapter *postgres.Adapter // from postgres.New
	if adapter != nil {
		w, err := worker.New(adapter, reg, worker.Config{Queues: []string{"emails"}})
		if err != nil {
			log.Fatal(err)
		}
		go w.Run(context.Background())
	}

	// The dispatcher sends the payload only:
	//	client.Dispatch(ctx, &WelcomeEmail{To: "ada@example.com", Name: "Ada"})
	// and this is what a worker does with the job it claims:
	x, err := reg.Prepare("WelcomeEmail", []byte(`{"To":"ada@example.com","Name":"Ada"}`), queue.Metadata{})
	if err != nil {
		log.Fatal(err)
	}
	sent, err := x.Handle(context.Background())
	fmt.Println(string(sent), err)
	// Output:
	// from hello@example.com to ada@example.com: Welcome: Hello, Ada!
	// true <nil>
}
