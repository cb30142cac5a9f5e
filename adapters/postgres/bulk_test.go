package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

// bulkRow is what the bulk tests read of a job.
type bulkRow struct {
	state    string
	attempt  int
	token    int64
	errors   string
	finished bool
}

func readBulkRows(t *testing.T, ctx context.Context, a *Adapter, q string) map[uuid.UUID]bulkRow {
	t.Helper()
	rows, err := a.pool.Query(ctx, `SELECT id, state::text, attempt, claim_token, errors::text, finished_at IS NOT NULL FROM tasq_jobs WHERE queue = $1`, q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]bulkRow{}
	for rows.Next() {
		var id uuid.UUID
		var r bulkRow
		if err := rows.Scan(&id, &r.state, &r.attempt, &r.token, &r.errors, &r.finished); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitNotification waits (up to 10 s) for a notification on conn whose
// payload has want in it, and returns the payloads it heard.
func waitNotification(t *testing.T, conn *pgx.Conn, channel, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("no notification on %s naming %q: %v", channel, want, err)
		}
		if n.Channel == channel && strings.Contains(n.Payload, want) {
			return
		}
	}
}

// RetryJobs keeps RetryJob's rules: available now, attempt 0, the claim
// token and the error history kept; other queues and states untouched; the
// queue's workers woken.
func TestBulkRetryKeepsTokenAndWakes(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "mail", queue.StateFailed, 5)
	fillJobs(t, ctx, a, "mail", queue.StateCompleted, 2)
	fillJobs(t, ctx, a, "other", queue.StateFailed, 3)
	if _, err := a.pool.Exec(ctx, `UPDATE tasq_jobs SET attempt = 4, claim_token = 7,
errors = '[{"attempt": 4, "error": "boom"}]' WHERE state = 'failed'`); err != nil {
		t.Fatal(err)
	}
	conn, err := a.listen(ctx, a.sql.channel)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	if n, err := a.CountJobs(ctx, queue.BulkFilter{State: queue.StateFailed, Queue: "mail"}); err != nil || n != 5 {
		t.Fatalf("CountJobs = %d, %v; want 5", n, err)
	}
	n, err := a.RetryJobs(ctx, queue.BulkFilter{State: queue.StateFailed, Queue: "mail"})
	if err != nil || n != 5 {
		t.Fatalf("RetryJobs = %d, %v; want 5", n, err)
	}
	waitNotification(t, conn, a.sql.channel, "mail")
	for id, r := range readBulkRows(t, ctx, a, "mail") {
		switch r.state {
		case "available":
			if r.attempt != 0 || r.token != 7 || r.finished || !strings.Contains(r.errors, "boom") {
				t.Errorf("retried job %s: %+v; want attempt 0, token 7 kept, errors kept, not finished", id, r)
			}
		case "completed":
		default:
			t.Errorf("job %s is %s", id, r.state)
		}
	}
	for id, r := range readBulkRows(t, ctx, a, "other") {
		if r.state != "failed" {
			t.Errorf("job %s of another queue is %s", id, r.state)
		}
	}
	if n, err := a.RetryJobs(ctx, queue.BulkFilter{State: queue.StateFailed, Queue: "mail"}); err != nil || n != 0 {
		t.Errorf("second RetryJobs = %d, %v; want 0", n, err)
	}
}

// A job retried in bulk whose old execution still runs somewhere: that
// execution's outcome is refused, as after RetryJob.
func TestBulkRetryStaleExecutionRefused(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	id := uuid.Must(uuid.NewV7())
	if err := a.Insert(ctx, []queue.NewJob{{ID: id, Kind: "k", Queue: "q", Payload: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: "q", WorkerID: "w1", Limit: 1, Lease: time.Minute})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	// The operator cancels it (its worker may not hear), then retries in bulk.
	if err := a.CancelJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n, err := a.RetryJobs(ctx, queue.BulkFilter{State: queue.StateCancelled}); err != nil || n != 1 {
		t.Fatalf("RetryJobs = %d, %v", n, err)
	}
	if n, err := a.Finish(ctx, "w1", []queue.Outcome{queue.Completed(jobs[0], nil)}); err != nil || n != 0 {
		t.Errorf("the old execution finished the retried job: %d, %v", n, err)
	}
	j, err := a.GetJob(ctx, id)
	if err != nil || j.State != queue.StateAvailable {
		t.Errorf("job after the stale finish: %v, %v; want available", j, err)
	}
}

// More jobs than a batch, and a cap: every batch continues after the last,
// and Limit stops the action at exactly that many.
func TestBulkBatchesAndLimit(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "big", queue.StateCompleted, 2*bulkBatch+500)
	fillJobs(t, ctx, a, "big", queue.StateAvailable, 10)
	if n, err := a.CountJobs(ctx, queue.BulkFilter{State: queue.StateCompleted, Limit: 100}); err != nil || n != 100 {
		t.Errorf("CountJobs with Limit 100 = %d, %v", n, err)
	}
	n, err := a.DeleteJobs(ctx, queue.BulkFilter{State: queue.StateCompleted, Queue: "big", Limit: bulkBatch + 200})
	if err != nil || n != bulkBatch+200 {
		t.Fatalf("DeleteJobs with a cap = %d, %v; want %d", n, err, bulkBatch+200)
	}
	n, err = a.DeleteJobs(ctx, queue.BulkFilter{State: queue.StateCompleted, Queue: "big"})
	if err != nil || n != bulkBatch+300 {
		t.Fatalf("DeleteJobs = %d, %v; want %d", n, err, bulkBatch+300)
	}
	if n, err := a.CountJobs(ctx, queue.BulkFilter{State: queue.StateAvailable, Queue: "big"}); err != nil || n != 10 {
		t.Errorf("available jobs left: %d, %v; want 10", n, err)
	}
	if n, err := a.CountJobs(ctx, queue.BulkFilter{State: queue.StateCompleted}); err != nil || n != 0 {
		t.Errorf("completed jobs left: %d, %v; want 0", n, err)
	}
}

// CancelJobs writes what CancelJob writes and names the jobs on the done
// channel, for clients that wait for them.
func TestBulkCancelLikeCancelJob(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "c", queue.StateScheduled, 3)
	fillJobs(t, ctx, a, "d", queue.StateScheduled, 1)
	conn, err := a.listen(ctx, a.sql.done)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var single uuid.UUID
	if err := a.pool.QueryRow(ctx, `SELECT id FROM tasq_jobs WHERE queue = 'd'`).Scan(&single); err != nil {
		t.Fatal(err)
	}
	if err := a.CancelJob(ctx, single); err != nil {
		t.Fatal(err)
	}
	n, err := a.CancelJobs(ctx, queue.BulkFilter{State: queue.StateScheduled, Queue: "c", Kind: "k"})
	if err != nil || n != 3 {
		t.Fatalf("CancelJobs = %d, %v", n, err)
	}
	want := readBulkRows(t, ctx, a, "d")[single]
	rows := readBulkRows(t, ctx, a, "c")
	var last uuid.UUID
	for id, r := range rows {
		if r.state != "cancelled" || !r.finished || !strings.Contains(r.errors, "cancelled by operator") ||
			strings.Count(r.errors, "error") != strings.Count(want.errors, "error") {
			t.Errorf("bulk-cancelled job %s: %+v; CancelJob wrote %+v", id, r, want)
		}
		last = id
	}
	waitNotification(t, conn, a.sql.done, last.String())
}

// The race: jobs a worker claims after the operator saw the count are not
// touched, whether the claim committed before the action (its state no
// longer matches) or is in flight while it runs (its row is locked: passed
// over, never waited for).
func TestBulkSkipsJobsThatTurnedRunning(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "r", queue.StateAvailable, 6)
	if n, err := a.CountJobs(ctx, queue.BulkFilter{State: queue.StateAvailable, Queue: "r"}); err != nil || n != 6 {
		t.Fatalf("count = %d, %v", n, err)
	}
	// A worker claims two after the count.
	claimed, err := a.Claim(ctx, queue.ClaimRequest{Queue: "r", WorkerID: "w", Limit: 2, Lease: time.Minute})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	// Another claim is in flight: its transaction has made a job running
	// and holds the row.
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	var inflight uuid.UUID
	if err := tx.QueryRow(ctx, `UPDATE tasq_jobs SET state = 'running', claim_token = claim_token + 1, attempted_by = 'w2',
lease_expires_at = now() + interval '1 minute'
WHERE id = (SELECT id FROM tasq_jobs WHERE queue = 'r' AND state = 'available' ORDER BY id LIMIT 1) RETURNING id`).Scan(&inflight); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second) // it must not wait for the claim
	defer cancel()
	n, err := a.CancelJobs(cctx, queue.BulkFilter{State: queue.StateAvailable, Queue: "r"})
	if err != nil || n != 3 {
		t.Fatalf("CancelJobs = %d, %v; want the 3 jobs nobody claimed", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows := readBulkRows(t, ctx, a, "r")
	running := []uuid.UUID{inflight, claimed[0].ID, claimed[1].ID}
	for id, r := range rows {
		if slices.Contains(running, id) {
			if r.state != "running" || r.finished || strings.Contains(r.errors, "cancelled") {
				t.Errorf("claimed job %s was touched: %+v", id, r)
			}
		} else if r.state != "cancelled" {
			t.Errorf("unclaimed job %s is %s, want cancelled", id, r.state)
		}
	}
	// The claimed jobs' executions still finish them.
	if n, err := a.Finish(ctx, "w", []queue.Outcome{queue.Completed(claimed[0], nil), queue.Completed(claimed[1], nil)}); err != nil || n != 2 {
		t.Errorf("finish of the claimed jobs: %d, %v", n, err)
	}
	// A delete of what is running is refused; so is a retry of completed jobs.
	for name, call := range map[string]func() (int, error){
		"delete running":  func() (int, error) { return a.DeleteJobs(ctx, queue.BulkFilter{State: queue.StateRunning}) },
		"cancel running":  func() (int, error) { return a.CancelJobs(ctx, queue.BulkFilter{State: queue.StateRunning}) },
		"retry completed": func() (int, error) { return a.RetryJobs(ctx, queue.BulkFilter{State: queue.StateCompleted}) },
		"retry no state":  func() (int, error) { return a.RetryJobs(ctx, queue.BulkFilter{Queue: "r"}) },
		"negative limit": func() (int, error) {
			return a.DeleteJobs(ctx, queue.BulkFilter{State: queue.StateCancelled, Limit: -1})
		},
		"count bad state":  func() (int, error) { return a.CountJobs(ctx, queue.BulkFilter{State: "nope"}) },
		"delete bad state": func() (int, error) { return a.DeleteJobs(ctx, queue.BulkFilter{State: "nope"}) },
	} {
		if n, err := call(); err == nil || n != 0 {
			t.Errorf("%s: %d, %v; want an error", name, n, err)
		} else if strings.HasSuffix(name, "running") || name == "retry completed" {
			if !errors.Is(err, queue.ErrJobState) {
				t.Errorf("%s: %v; want ErrJobState", name, err)
			}
		}
	}
	if st := readBulkRows(t, ctx, a, "r")[inflight].state; st != "running" {
		t.Errorf("in-flight job is %s after the refused actions", st)
	}
}

// A unique job whose key another job holds now is left failed, as RetryJob
// leaves it; the rest of the batch is retried.
func TestBulkRetryUniqueKeyHeld(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "u", queue.StateFailed, 4)
	fillJobs(t, ctx, a, "u", queue.StateAvailable, 1)
	// Unique jobs hold their key while scheduled, available, running or
	// retryable (1|2|4|16). The available job and one failed job share key 1;
	// another failed job has key 2, free.
	if _, err := a.pool.Exec(ctx, `
WITH f AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM tasq_jobs WHERE state = 'failed')
UPDATE tasq_jobs j SET unique_key = CASE f.n WHEN 1 THEN '\x01'::bytea ELSE '\x02'::bytea END, unique_states = 23
FROM f WHERE j.id = f.id AND f.n <= 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, `UPDATE tasq_jobs SET unique_key = '\x01', unique_states = 23 WHERE state = 'available'`); err != nil {
		t.Fatal(err)
	}
	n, err := a.RetryJobs(ctx, queue.BulkFilter{State: queue.StateFailed, Queue: "u"})
	if err != nil || n != 3 {
		t.Fatalf("RetryJobs = %d, %v; want 3 (all but the one whose key is held)", n, err)
	}
	var stillFailed []byte
	if err := a.pool.QueryRow(ctx, `SELECT unique_key FROM tasq_jobs WHERE state = 'failed'`).Scan(&stillFailed); err != nil || string(stillFailed) != "\x01" {
		t.Errorf("the job left failed has key %x, %v; want the held key 01", stillFailed, err)
	}
}
