package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
)

// Retry every failed job of the payments queue after the card processor's
// outage, without a loop over IDs: the adapter changes them in batches.
func ExampleAdapter_RetryJobs() {
	ctx := context.Background()
	ad, err := postgres.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer ad.Close()

	f := queue.BulkFilter{State: queue.StateFailed, Queue: "payments", Kind: "charge_card"}
	n, err := ad.CountJobs(ctx, f)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "failed charges")
	retried, err := ad.RetryJobs(ctx, f) // jobs claimed meanwhile are left alone
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(retried, "retried")
}

// Print the last ten minutes' throughput, minute by minute.
func ExampleAdapter_Throughput() {
	ctx := context.Background()
	ad, err := postgres.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer ad.Close()

	since := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	points, err := ad.Throughput(ctx, since, time.Minute) // minutes with no finished job are left out
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range points {
		fmt.Printf("%s  %5d completed  %3d failed\n", p.At.Format("15:04"), p.Completed, p.Failed)
	}
}
