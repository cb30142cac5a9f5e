package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
)

// Plain dispatches wake workers after their commit, coalesced: many
// concurrent dispatches send far fewer notifications than jobs, and the
// last dispatch is still followed by a wake-up for its queue.
func TestWakeUpsAreCoalesced(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, dsn := newAdapter(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+postgres.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 16, 40
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if err := a.Insert(ctx, []queue.NewJob{job("coalesce")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	last := job("coalesce-last")
	if err := a.Insert(ctx, []queue.NewJob{last}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := conn.WaitForNotification(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("no wake-up for the last queue after %d notifications: %v", got, err)
		}
		got++
		if n.Payload == "coalesce-last" {
			break
		}
	}
	if got >= goroutines*each {
		t.Errorf("%d notifications for %d dispatches: not coalesced", got, goroutines*each)
	}
	t.Logf("%d dispatches from %d goroutines woke workers with %d notifications", goroutines*each+1, goroutines, got)
}

// WithoutWakeUps: plain dispatches send no wake-up.
func TestWithoutWakeUpsSendsNone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, dsn := newAdapter(t)
	quiet, err := postgres.NewFromPool(ctx, a.Pool(), postgres.WithoutWakeUps())
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+postgres.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	if err := quiet.Insert(ctx, []queue.NewJob{job("silent")}); err != nil {
		t.Fatal(err)
	}
	quiet.Close() // sends whatever it had pending, which must be nothing
	if err := a.Insert(ctx, []queue.NewJob{job("marker")}); err != nil {
		t.Fatal(err)
	}
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Payload != "marker" {
		t.Fatalf("first notification is for %q; the quiet adapter sent a wake-up", n.Payload)
	}
}
