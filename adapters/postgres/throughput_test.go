package postgres

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// Throughput counts completed, failed and cancelled jobs per interval from
// since on, leaves out empty intervals and the jobs that did not finish,
// and puts each finish time in the interval that holds it.
func TestThroughputCountsPerInterval(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	set := func(q string, st queue.JobState, n int, at time.Time) {
		t.Helper()
		fillJobs(t, ctx, a, q, st, n)
		if _, err := a.pool.Exec(ctx, `UPDATE tasq_jobs SET finished_at = $1 WHERE queue = $2 AND state = $3::tasq_job_state`, at, q, string(st)); err != nil {
			t.Fatal(err)
		}
	}
	set("a", queue.StateCompleted, 3, base.Add(30*time.Second))
	set("b", queue.StateCompleted, 2, base.Add(5*time.Minute+10*time.Second))
	set("b", queue.StateFailed, 2, base.Add(6*time.Minute-time.Microsecond)) // last µs of minute 5
	set("c", queue.StateCancelled, 1, base.Add(9*time.Minute))               // first µs of minute 9
	set("d", queue.StateCompleted, 4, base.Add(-time.Microsecond))           // before since
	fillJobs(t, ctx, a, "e", queue.StateAvailable, 5)
	fillJobs(t, ctx, a, "e", queue.StateRunning, 2)

	got, err := a.Throughput(ctx, base, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []queue.ThroughputPoint{
		{At: base, Completed: 3},
		{At: base.Add(5 * time.Minute), Completed: 2, Failed: 2},
		{At: base.Add(9 * time.Minute), Cancelled: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("Throughput = %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].At.Equal(want[i].At) || got[i].Completed != want[i].Completed || got[i].Failed != want[i].Failed || got[i].Cancelled != want[i].Cancelled {
			t.Errorf("point %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// An odd step and since: the intervals start at since.
	got, err = a.Throughput(ctx, base.Add(20*time.Second), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Completed != 5 || got[0].Failed != 0 || got[1].Failed != 2 || !got[1].At.Equal(base.Add(20*time.Second+5*time.Minute)) || got[1].Cancelled != 1 {
		t.Errorf("5-minute intervals from since+20s = %+v", got)
	}
	if _, err := a.Throughput(ctx, base, 0); err == nil {
		t.Error("a zero step is accepted")
	}
}

// The throughput statement reads the index of finish times from since on,
// not the table: the finished jobs of the days before are never visited.
func TestThroughputUsesFinishedIndex(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "old", queue.StateCompleted, 50000)
	if _, err := a.pool.Exec(ctx, `UPDATE tasq_jobs SET finished_at = now() - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	fillJobs(t, ctx, a, "new", queue.StateCompleted, 100)
	fillJobs(t, ctx, a, "new", queue.StateAvailable, 100)
	if _, err := a.pool.Exec(ctx, `VACUUM ANALYZE tasq_jobs`); err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Hour)
	plan := explainArgs(t, ctx, a, a.sql.q(throughputSQL), []any{since, time.Minute.Microseconds()})
	t.Logf("plan:\n%s", plan)
	if !strings.Contains(plan, "tasq_jobs_finished_idx") || strings.Contains(plan, "Seq Scan") {
		t.Errorf("the throughput statement does not read tasq_jobs_finished_idx alone:\n%s", plan)
	}
	pts, err := a.Throughput(ctx, since, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range pts {
		n += p.Completed
	}
	if n != 100 {
		t.Errorf("counted %d completed jobs in the last hour, want 100", n)
	}
}

// TestThroughputAtScale times the throughput statement on a table of a
// million finished jobs (skipped unless TASQ_BIG=1):
//
//	TASQ_BIG=1 go test -run TestThroughputAtScale -v ./adapters/postgres/
//
// once with the jobs spread over 24 hours (about 42,000 in the chart's
// hour), once with all of them in the last hour.
func TestThroughputAtScale(t *testing.T) {
	if os.Getenv("TASQ_BIG") != "1" {
		t.Skip("set TASQ_BIG=1 to time the throughput statement on a million finished jobs")
	}
	a, ctx := newInspectAdapter(t)
	for _, spread := range []string{"24 hours", "59 minutes"} {
		if _, err := a.pool.Exec(ctx, `TRUNCATE tasq_jobs`); err != nil {
			t.Fatal(err)
		}
		if _, err := a.pool.Exec(ctx, `INSERT INTO tasq_jobs (id, kind, queue, state, finished_at, run_at)
SELECT tasq_uuidv7(), 'k', 'q', CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'completed' END::tasq_job_state,
       now() - random() * interval '`+spread+`', now()
FROM generate_series(1, 1000000) AS i`); err != nil {
			t.Fatal(err)
		}
		if _, err := a.pool.Exec(ctx, `VACUUM ANALYZE tasq_jobs`); err != nil {
			t.Fatal(err)
		}
		since := time.Now().Truncate(time.Minute).Add(-59 * time.Minute)
		args := []any{since, time.Minute.Microseconds()}
		_ = explainArgs(t, ctx, a, a.sql.q(throughputSQL), args) // warm the cache
		plan := explainArgs(t, ctx, a, a.sql.q(throughputSQL), args)
		start := time.Now()
		if _, err := a.Throughput(context.Background(), since, time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("1M finished jobs over %s: Throughput took %v\n%s", spread, time.Since(start).Round(time.Millisecond*1/10), plan)
	}
}
