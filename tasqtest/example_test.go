package tasqtest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqtest"
)

// Mailer sends email; the application gives workers a real one.
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// SendEmail is the README's task with an injected mailer: the exported
// fields are the payload, the unexported mailer is set by the factory
// registered with queue.RegisterFactory.
type SendEmail struct {
	queue.TaskBase
	To, Subject, Body string

	mailer Mailer
}

func (*SendEmail) Config() queue.Config {
	return queue.Config{Queue: "emails", MaxRetries: 5, RetryDelay: 2 * time.Minute, Timeout: 30 * time.Second}
}

func (t *SendEmail) Handle(ctx context.Context) (bool, error) {
	if err := t.mailer.Send(ctx, t.To, t.Subject, t.Body); err != nil {
		return false, fmt.Errorf("send to %s: %w", t.To, err)
	}
	return true, nil
}

// fakeMailer records what it was asked to send.
type fakeMailer struct {
	mu   sync.Mutex
	sent []string
	fail int // fail the next fail sends
}

func (m *fakeMailer) Send(ctx context.Context, to, subject, body string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return fmt.Errorf("SMTP 451: try again later")
	}
	m.sent = append(m.sent, to+": "+subject)
	return nil
}

func (m *fakeMailer) Sent() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.sent...)
}

// signUp is the code under test: it dispatches a welcome email.
func signUp(ctx context.Context, client *queue.Client, email string) error {
	_, err := client.Dispatch(ctx, &SendEmail{To: email, Subject: "Welcome", Body: "Hello!"})
	return err
}

// Record what the code under test dispatches and assert on it, decoded
// into the task type.
func ExampleAssertDispatched() {
	t := &testing.T{} // in a test, the *testing.T it was given
	rec := tasqtest.New(t)

	if err := signUp(context.Background(), rec.Client(), "ada@example.com"); err != nil {
		panic(err)
	}

	tasqtest.AssertDispatched(t, rec, func(e *SendEmail) bool { return e.To == "ada@example.com" })
	for _, e := range tasqtest.Dispatched[*SendEmail](t, rec) {
		fmt.Println(e.To, e.Subject)
	}
	// Output: ada@example.com Welcome
}

// Inline runs each dispatched task at once, through the registry a worker
// would use: here SendEmail gets a fake mailer from its factory.
func ExampleInline() {
	t := &testing.T{}              // in a test, the *testing.T it was given
	mailer := &fakeMailer{fail: 1} // the first attempt fails, the retry succeeds
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *SendEmail { return &SendEmail{mailer: mailer} })
	rec := tasqtest.New(t, tasqtest.Inline(reg))
	client := rec.Client()

	id, err := client.Dispatch(context.Background(), &SendEmail{To: "ada@example.com", Subject: "Welcome"})
	if err != nil {
		panic(err)
	}

	fmt.Println(mailer.Sent())
	fmt.Println(tasqtest.Result[bool](t, rec, id))
	job, _ := rec.GetJob(context.Background(), id)
	fmt.Println(job.State, job.Attempt, job.LastError())
	// Output:
	// [ada@example.com: Welcome]
	// true
	// completed 2 send to ada@example.com: SMTP 451: try again later
}
