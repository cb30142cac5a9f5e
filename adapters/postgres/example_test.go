package postgres_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

// Pause a queue for every worker, and bound another one across the fleet:
// at most 10 reports run at once, at most 100 start per minute, and each
// customer has at most one running. The claim enforces both in the database.
func ExampleAdapter_SetQueueLimits() {
	ctx := context.Background()
	a, err := postgres.New(ctx, os.Getenv("TASQ_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	if err := a.PauseQueue(ctx, "emails"); err != nil { // running jobs finish; nothing new starts
		log.Fatal(err)
	}
	err = a.SetQueueLimits(ctx, "reports", queue.QueueLimits{
		Total:    queue.Limit{MaxRunning: 10, MaxStarts: 100, Per: time.Minute},
		KeyField: "customer_id",
		PerKey:   queue.Limit{MaxRunning: 1},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := a.ResumeQueue(ctx, "emails"); err != nil { // and its workers wake at once
		log.Fatal(err)
	}
}

// Two apps share one database, each with TasQ in a schema of its own: the
// migrations and the adapter take the same schema (or the URL parameter
// tasq_schema=billing).
func ExampleWithSchema() {
	ctx := context.Background()
	url := os.Getenv("TASQ_DATABASE_URL")
	if err := migrations.Up(ctx, url, migrations.WithSchema("billing")); err != nil {
		log.Fatal(err)
	}
	a, err := postgres.New(ctx, url, postgres.WithSchema("billing"))
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	log.Println(a.Setup().Channel) // tasq_jobs.billing
}
