package postgres

import (
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// Lag reports each queue with available jobs, the oldest one's run time and
// its age by the database clock; finished, running and future jobs do not
// count, and a queue with nothing available is left out.
func TestLagOldestAvailablePerQueue(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "mail", queue.StateAvailable, 3)
	fillJobs(t, ctx, a, "mail", queue.StateCompleted, 5)
	fillJobs(t, ctx, a, "idle", queue.StateCompleted, 2)
	fillJobs(t, ctx, a, "idle", queue.StateRunning, 2)
	fillJobs(t, ctx, a, "idle", queue.StateScheduled, 2)
	fillJobs(t, ctx, a, "web", queue.StateAvailable, 1)
	// One mail job has waited 90 seconds; a finished one is older still.
	if _, err := a.pool.Exec(ctx, `UPDATE tasq_jobs SET run_at = now() - interval '90 seconds'
WHERE id = (SELECT id FROM tasq_jobs WHERE queue = 'mail' AND state = 'available' LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, `UPDATE tasq_jobs SET run_at = now() - interval '1 day' WHERE queue = 'mail' AND state = 'completed'`); err != nil {
		t.Fatal(err)
	}
	lags, err := a.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 2 || lags[0].Queue != "mail" || lags[1].Queue != "web" {
		t.Fatalf("lags = %+v, want mail and web only, sorted", lags)
	}
	mail := lags[0]
	if mail.Available != 3 {
		t.Errorf("mail available = %d, want 3", mail.Available)
	}
	if mail.Lag < 90*time.Second || mail.Lag > 5*time.Minute {
		t.Errorf("mail lag = %v, want about 90s", mail.Lag)
	}
	if web := lags[1]; web.Available != 1 || web.Lag < 0 || web.Lag > time.Minute {
		t.Errorf("web = %+v, want 1 available with a lag under a minute", web)
	}
	if got := time.Since(mail.Oldest); got < 80*time.Second {
		t.Errorf("mail oldest %v is only %v ago", mail.Oldest, got)
	}
}
