package queue_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// CleanupSessions is a task that schedules run.
type CleanupSessions struct {
	queue.TaskBase
	OlderThanDays int
}

func (*CleanupSessions) Config() queue.Config {
	return queue.Config{Queue: "maintenance", Timeout: 10 * time.Minute}
}

func (t *CleanupSessions) Handle(ctx context.Context) (int, error) {
	return 0, nil // delete the sessions older than t.OlderThanDays; return how many
}

// Periodic jobs live in the database: define them at start-up (an
// unchanged schedule keeps its next tick, so every start and every replica
// may do it), and every running worker fires them, one job per tick
// however many workers run. Pause, resume, trigger and remove them at run
// time from Go, `tasq cron` or SQL.
func ExampleClient_Schedule() {
	ctx := context.Background()
	adapter, err := postgres.New(ctx, os.Getenv("TASQ_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	client, err := queue.NewClient(adapter)
	if err != nil {
		log.Fatal(err)
	}

	// 03:00 in Berlin, summer and winter; after downtime, one catch-up run.
	err = client.Schedule(ctx, queue.Schedule{Name: "nightly-cleanup", Cron: "0 3 * * *", TimeZone: "Europe/Berlin"},
		&CleanupSessions{OlderThanDays: 30})
	if err != nil {
		log.Fatal(err)
	}
	// Every 15 minutes; ticks missed by more than a minute are dropped.
	err = client.Schedule(ctx, queue.Schedule{Name: "cleanup-guests", Every: 15 * time.Minute, Missed: queue.MissedSkip},
		&CleanupSessions{OlderThanDays: 1}, queue.OnQueue("default"))
	if err != nil {
		log.Fatal(err)
	}

	sched, err := client.Scheduler()
	if err != nil {
		log.Fatal(err)
	}
	id, err := sched.TriggerSchedule(ctx, "nightly-cleanup") // one extra run now; the 03:00 tick stays
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("triggered job", id)

	reg := queue.NewRegistry()
	queue.MustRegister(reg, &CleanupSessions{})
	w, err := worker.New(adapter, reg, worker.Config{Queues: []string{"maintenance", "default"}})
	if err != nil {
		log.Fatal(err)
	}
	_ = w.Run(ctx) // fires due schedules every second (worker.Config.Cron), and runs their jobs
}

// A cron expression is read in its zone's wall-clock time. On the night
// the clocks go forward, 02:30 does not exist in Berlin: the job runs at the
// end of the gap, 03:00, so that a daily job never misses a day.
func ExampleTiming_Next() {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	timing, err := queue.Schedule{Name: "backup", Cron: "30 2 * * *", TimeZone: "Europe/Berlin"}.Timing()
	if err != nil {
		log.Fatal(err)
	}
	t := time.Date(2025, 3, 28, 12, 0, 0, 0, berlin)
	for range 3 {
		t = timing.Next(t)
		fmt.Println(t.In(berlin).Format("Mon 2 Jan 15:04 MST"))
	}
	// Output:
	// Sat 29 Mar 02:30 CET
	// Sun 30 Mar 03:00 CEST
	// Mon 31 Mar 02:30 CEST
}
