package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
)

// The bulk actions and the throughput count of one schema see only its own
// jobs, on a database another schema's jobs share.
func TestBulkAndThroughputStayInTheirSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := schemaDatabase(t, "app_a", "app_b")
	var ads []*postgres.Adapter
	for _, s := range []string{"app_a", "app_b"} {
		ad, err := postgres.New(ctx, dsn, postgres.WithSchema(s))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ad.Close)
		ads = append(ads, ad)
		for range 3 {
			if err := ad.Insert(ctx, []queue.NewJob{{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: "q", Payload: []byte(`{}`)}}); err != nil {
				t.Fatal(err)
			}
		}
		jobs, err := ad.Claim(ctx, queue.ClaimRequest{Queue: "q", WorkerID: "w", Limit: 2, Lease: time.Minute})
		if err != nil || len(jobs) != 2 {
			t.Fatalf("claim: %d, %v", len(jobs), err)
		}
		if _, err := ad.Finish(ctx, "w", []queue.Outcome{queue.Failed(jobs[0], errors.New("x")), queue.Completed(jobs[1], nil)}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := ads[0], ads[1]
	if n, err := a.RetryJobs(ctx, queue.BulkFilter{State: queue.StateFailed}); err != nil || n != 1 {
		t.Errorf("app_a RetryJobs = %d, %v", n, err)
	}
	if n, err := a.CancelJobs(ctx, queue.BulkFilter{State: queue.StateAvailable}); err != nil || n != 2 {
		t.Errorf("app_a CancelJobs = %d, %v", n, err)
	}
	if n, err := a.DeleteJobs(ctx, queue.BulkFilter{State: queue.StateCompleted}); err != nil || n != 1 {
		t.Errorf("app_a DeleteJobs = %d, %v", n, err)
	}
	for st, want := range map[queue.JobState]int{queue.StateFailed: 1, queue.StateAvailable: 1, queue.StateCompleted: 1} {
		if n, err := b.CountJobs(ctx, queue.BulkFilter{State: st}); err != nil || n != want {
			t.Errorf("app_b has %d %s jobs, %v; want %d (untouched)", n, st, err, want)
		}
	}
	pts, err := b.Throughput(ctx, time.Now().Add(-time.Hour), time.Hour)
	if err != nil || len(pts) != 1 || pts[0].Completed != 1 || pts[0].Failed != 1 || pts[0].Cancelled != 0 {
		t.Errorf("app_b Throughput = %+v, %v; want its own 1 completed and 1 failed", pts, err)
	}
}
