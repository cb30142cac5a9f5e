package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

func TestLeaderElectionIsOneTermAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	lead := func(id string, ttl time.Duration) bool {
		t.Helper()
		ok, err := a.TryLead(ctx, id, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !lead("a", 300*time.Millisecond) {
		t.Fatal("the first worker could not lead a free term")
	}
	if lead("b", time.Minute) {
		t.Fatal("b took a term a still holds")
	}
	if !lead("a", 300*time.Millisecond) {
		t.Fatal("a could not renew its own term")
	}
	if id, _, err := a.Leader(ctx); err != nil || id != "a" {
		t.Fatalf("Leader = %q, %v", id, err)
	}
	// a stops renewing (killed): b takes over once the term has run out.
	deadline := time.Now().Add(5 * time.Second)
	for !lead("b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatal("b never took over the expired term")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lead("a", time.Minute) {
		t.Fatal("the old leader took the term back from b")
	}
	if err := a.Resign(ctx, "a"); err != nil { // not a's to give up: no effect
		t.Fatal(err)
	}
	if id, _, _ := a.Leader(ctx); id != "b" {
		t.Fatalf("after a's resign, the leader is %q, want b", id)
	}
	if err := a.Resign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if !lead("c", time.Minute) {
		t.Fatal("c could not lead right after b resigned")
	}
}

// finishedJobs inserts n jobs of queue q and finishes them as st, with
// finished_at moved age into the past.
func finishedJobs(t *testing.T, a queue.Adapter, pool func(ctx context.Context, sql string, args ...any) error, q string, st queue.JobState, n int, age time.Duration) []uuid.UUID {
	t.Helper()
	ctx := context.Background()
	jobs := make([]queue.NewJob, n)
	ids := make([]uuid.UUID, n)
	for i := range jobs {
		jobs[i] = job(q)
		ids[i] = jobs[i].ID
	}
	if err := a.Insert(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	if err := pool(ctx, `UPDATE tasq_jobs SET state = $1::tasq_job_state, finished_at = now() - $2 * interval '1 millisecond' WHERE id = ANY($3)`,
		string(st), age.Milliseconds(), ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestPurgeDeletesOnlyWhatItSelects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	exec := func(ctx context.Context, sql string, args ...any) error {
		_, err := a.Pool().Exec(ctx, sql, args...)
		return err
	}
	oldDone := finishedJobs(t, a, exec, "q", queue.StateCompleted, 25, 2*time.Hour)
	newDone := finishedJobs(t, a, exec, "q", queue.StateCompleted, 5, time.Minute)
	oldFailed := finishedJobs(t, a, exec, "q", queue.StateFailed, 5, 2*time.Hour)
	otherQ := finishedJobs(t, a, exec, "keep", queue.StateCompleted, 5, 2*time.Hour)
	live := job("q")
	if err := a.Insert(ctx, []queue.NewJob{live}); err != nil {
		t.Fatal(err)
	}
	f := queue.PurgeFilter{State: queue.StateCompleted, OlderThan: time.Hour, ExceptQueues: []string{"keep"}, Limit: 10}
	if n, err := a.CountPurgeable(ctx, f); err != nil || n != 25 {
		t.Fatalf("dry run counted %d, %v; want 25", n, err)
	}
	total := 0
	for {
		n, err := a.Purge(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			t.Fatalf("one batch deleted %d, limit 10", n)
		}
		total += n
		if n < 10 {
			break
		}
	}
	if total != 25 {
		t.Fatalf("purged %d, want 25", total)
	}
	for _, id := range oldDone {
		if _, err := a.GetJob(ctx, id); !errors.Is(err, queue.ErrJobNotFound) {
			t.Fatalf("old completed job %s still there", id)
		}
	}
	for name, ids := range map[string][]uuid.UUID{"recent": newDone, "failed": oldFailed, "other queue": otherQ, "live": {live.ID}} {
		for _, id := range ids {
			if _, err := a.GetJob(ctx, id); err != nil {
				t.Errorf("%s job %s was purged: %v", name, id, err)
			}
		}
	}
	if _, err := a.Purge(ctx, queue.PurgeFilter{State: queue.StateRunning}); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Errorf("purging running jobs: %v, want ErrInvalidConfig", err)
	}
}

func TestPurgeCanArchive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	exec := func(ctx context.Context, sql string, args ...any) error {
		_, err := a.Pool().Exec(ctx, sql, args...)
		return err
	}
	ids := finishedJobs(t, a, exec, "arch", queue.StateFailed, 7, 48*time.Hour)
	n, err := a.Purge(ctx, queue.PurgeFilter{State: queue.StateFailed, OlderThan: 24 * time.Hour, Archive: true})
	if err != nil || n != 7 {
		t.Fatalf("archived %d, %v; want 7", n, err)
	}
	var archived int
	if err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs_archive WHERE id = ANY($1) AND state = 'failed' AND archived_at IS NOT NULL`, ids).Scan(&archived); err != nil || archived != 7 {
		t.Fatalf("archive holds %d of 7 (%v)", archived, err)
	}
	var left int
	if err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE id = ANY($1)`, ids).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d archived jobs left in tasq_jobs (%v)", left, err)
	}
}

// Retention batches use the finished-jobs index, not a scan of the table.
func TestPurgeUsesTheFinishedIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	if _, err := a.Pool().Exec(ctx, `INSERT INTO tasq_jobs (id, kind, state, finished_at)
		SELECT gen_random_uuid(), 'k', 'completed', now() - i * interval '1 second' FROM generate_series(1, 20000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pool().Exec(ctx, `ANALYZE tasq_jobs`); err != nil {
		t.Fatal(err)
	}
	var plan string
	rows, err := a.Pool().Query(ctx, fmt.Sprintf(`EXPLAIN SELECT id FROM tasq_jobs WHERE %s ORDER BY finished_at LIMIT 1000`,
		`state IN ('completed', 'failed', 'cancelled') AND state = 'completed' AND finished_at < now() - interval '1 hour' AND ('' = '' OR queue = '') AND NOT (queue = ANY('{}'::text[]))`))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l string
		_ = rows.Scan(&l)
		plan += l + "\n"
	}
	if !containsAll(plan, "tasq_jobs_finished_idx") {
		t.Errorf("purge plan does not use tasq_jobs_finished_idx:\n%s", plan)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
