package integration

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Failed jobs are a dead letter: they can be listed with their last error,
// retried, and deleted.
func TestDeadLetterRetryCancelDelete(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	failed, _ := e.client.Dispatch(e.ctx, &Flaky{Key: key, Permanent: true})
	e.startWorker(registry(t), worker.Config{Queues: []string{"flaky"}})
	e.waitState(failed, queue.StateFailed, 10*time.Second)

	list, err := e.adapter.ListJobs(e.ctx, queue.ListFilter{State: queue.StateFailed})
	if err != nil || len(list) != 1 || list[0].ID != failed || list[0].LastError() != "charge: card declined" {
		t.Fatalf("failed jobs = %+v, %v", list, err)
	}
	if err := e.adapter.RetryJob(e.ctx, failed); err != nil {
		t.Fatal(err)
	}
	e.waitJob(failed, func(j *queue.JobInfo) bool { return j.State == queue.StateFailed && len(j.Errors) == 2 })
	if seen, _ := p.snapshot(); len(seen) != 2 {
		t.Errorf("retried dead letter ran %d times in all, want 2", len(seen))
	}

	scheduled, _ := e.client.Dispatch(e.ctx, &SendEmail{To: "x"}, queue.Delay(time.Hour))
	if err := e.adapter.CancelJob(e.ctx, scheduled); err != nil {
		t.Fatal(err)
	}
	if j := e.job(scheduled); j.State != queue.StateCancelled || j.LastError() != "cancelled by operator" {
		t.Errorf("cancelled job %+v", j)
	}
	if err := e.adapter.CancelJob(e.ctx, scheduled); !errors.Is(err, queue.ErrJobState) {
		t.Errorf("cancel twice: %v, want ErrJobState", err)
	}
	if err := e.adapter.DeleteJob(e.ctx, scheduled); err != nil {
		t.Fatal(err)
	}
	if _, err := e.adapter.GetJob(e.ctx, scheduled); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("deleted job still there: %v", err)
	}
	if err := e.adapter.RetryJob(e.ctx, uuid.New()); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("retry unknown: %v", err)
	}

	stats, err := e.adapter.Stats(e.ctx)
	if err != nil || len(stats) != 1 || stats[0].Queue != "flaky" || stats[0].State != queue.StateFailed || stats[0].Count != 1 {
		t.Errorf("stats = %+v, %v", stats, err)
	}
	if _, err := e.adapter.ListJobs(e.ctx, queue.ListFilter{State: "bogus"}); err == nil {
		t.Error("ListJobs accepted an unknown state")
	}
}

// The README's three example queries run against the documented table.
func TestReadmeQueries(t *testing.T) {
	e := newEnv(t)
	if _, err := e.client.Dispatch(e.ctx, &SendEmail{To: "x"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`SELECT queue, state, count(*) FROM tasq_jobs GROUP BY queue, state ORDER BY queue, state`,
		`SELECT id, kind, queue, attempt, finished_at, errors -> -1 ->> 'error' AS last_error
FROM tasq_jobs WHERE state = 'failed' ORDER BY finished_at DESC LIMIT 20`,
		`SELECT id, state, dispatched_at, result FROM tasq_jobs
WHERE kind = 'SendEmail' AND dispatched_at > now() - interval '1 hour' ORDER BY dispatched_at DESC`,
	} {
		rows, err := e.pool.Query(e.ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		rows.Close()
		if rows.Err() != nil {
			t.Fatalf("%s: %v", q, rows.Err())
		}
	}
}

func (e *env) waitJob(id uuid.UUID, cond func(*queue.JobInfo) bool) {
	e.t.Helper()
	waitFor(e.t, 10*time.Second, "job "+id.String()+" to reach the expected state", func() bool { return cond(e.job(id)) })
}
