// Command quickstart is README's first example, whole: define a task,
// migrate, dispatch, and run a worker until Ctrl-C stops it gracefully.
//
//	TASQ_DATABASE_URL=postgres://... go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// SendNotification is a task: exported fields are the payload, Handle does the work.
type SendNotification struct {
	queue.TaskBase // ID(), Attempt(), DispatchedAt()
	Message        string
}

// Handle sends the notification; its result is stored on the job row.
func (t *SendNotification) Handle(ctx context.Context) (string, error) {
	fmt.Println("Notification:", t.Message)
	return "Sent: " + t.Message, nil
}

func main() {
	// Ctrl-C or SIGTERM cancels ctx; the worker then stops gracefully.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	url := os.Getenv("TASQ_DATABASE_URL")
	if err := migrations.Up(ctx, url); err != nil { // creates tasq_jobs (once)
		log.Fatal(err)
	}
	adapter, err := postgres.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	client, err := queue.NewClient(adapter)
	if err != nil {
		log.Fatal(err)
	}

	id, err := client.Dispatch(ctx, &SendNotification{Message: "Hello, World!"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Task dispatched with ID:", id)

	// A worker runs beside the app (or in another process built from it).
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &SendNotification{})
	w, err := worker.New(adapter, reg, worker.Config{Queues: []string{"default"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil { // until Ctrl-C: then finish or hand back running jobs
		log.Fatal(err)
	}
}
