package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// newInspectAdapter returns an adapter on a fresh database whose tasq_jobs
// autovacuum leaves alone, so that its statistics are the ones the test
// takes with ANALYZE.
func newInspectAdapter(t *testing.T) (*Adapter, context.Context) {
	t.Helper()
	ctx := context.Background()
	a, err := New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if _, err := a.pool.Exec(ctx, `ALTER TABLE tasq_jobs SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	return a, ctx
}

// fillJobs inserts n jobs of queue q in state st (by SQL, as a busy table
// holds them) and returns nothing; the IDs are UUIDv7 made now.
func fillJobs(t *testing.T, ctx context.Context, a *Adapter, q string, st queue.JobState, n int) {
	t.Helper()
	if _, err := a.pool.Exec(ctx, `INSERT INTO tasq_jobs (id, kind, queue, state, finished_at, lease_expires_at, run_at)
SELECT tasq_uuidv7(), 'k', $1, $2::tasq_job_state,
       CASE WHEN $2 IN ('completed', 'failed', 'cancelled') THEN now() END,
       CASE WHEN $2 = 'running' THEN now() + interval '1 hour' END,
       CASE WHEN $2 IN ('scheduled', 'retryable') THEN now() + interval '1 hour' ELSE now() END
FROM generate_series(1, $3::int)`, q, string(st), n); err != nil {
		t.Fatal(err)
	}
}

// statsMap keys stats by "queue/state".
func statsMap(stats []queue.QueueStat) map[string]queue.QueueStat {
	m := map[string]queue.QueueStat{}
	for _, s := range stats {
		m[s.Queue+"/"+string(s.State)] = s
	}
	return m
}

// A small table is counted row by row: exact figures, none marked estimated,
// sorted by queue and life-cycle order.
func TestStatsSmallTableIsExact(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	want := map[string]int64{
		"a/scheduled": 2, "a/available": 3, "a/completed": 50, "a/failed": 4,
		"b/running": 1, "b/retryable": 2, "b/cancelled": 5, "b/completed": 7,
	}
	for k, n := range want {
		q, st, _ := strings.Cut(k, "/")
		fillJobs(t, ctx, a, q, queue.JobState(st), int(n))
	}
	for _, analyzed := range []bool{false, true} {
		if analyzed {
			if _, err := a.pool.Exec(ctx, `ANALYZE tasq_jobs`); err != nil {
				t.Fatal(err)
			}
		}
		stats, err := a.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(stats) != len(want) {
			t.Errorf("analyzed %v: Stats = %+v, want %d pairs", analyzed, stats, len(want))
		}
		for _, s := range stats {
			if s.Estimated || s.Count != want[s.Queue+"/"+string(s.State)] {
				t.Errorf("analyzed %v: %+v, want exactly %d", analyzed, s, want[s.Queue+"/"+string(s.State)])
			}
		}
		sorted := slices.IsSortedFunc(stats, func(x, y queue.QueueStat) int {
			if c := strings.Compare(x.Queue, y.Queue); c != 0 {
				return c
			}
			return slices.Index(queue.States, x.State) - slices.Index(queue.States, y.State)
		})
		if !sorted {
			t.Errorf("Stats not sorted by queue and state: %+v", stats)
		}
	}
}

// On a large table (here: any table, with the size limit 0) the live jobs
// are counted exactly — also the ones that came after the last ANALYZE — and
// the finished ones are estimated from the statistics and marked so.
func TestStatsEstimatesFinishedCountsLive(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)

	// Without statistics there is nothing to estimate from: every row is
	// counted, whatever the table's size.
	fillJobs(t, ctx, a, "mail", queue.StateCompleted, 3000)
	stats, err := a.stats(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0] != (queue.QueueStat{Queue: "mail", State: queue.StateCompleted, Count: 3000}) {
		t.Fatalf("before any ANALYZE: Stats = %+v, want exactly 3000 completed mail jobs", stats)
	}

	fillJobs(t, ctx, a, "mail", queue.StateFailed, 600)
	fillJobs(t, ctx, a, "mail", queue.StateCancelled, 100)
	fillJobs(t, ctx, a, "pay", queue.StateCompleted, 1500)
	fillJobs(t, ctx, a, "pay", queue.StateFailed, 900)
	fillJobs(t, ctx, a, "mail", queue.StateAvailable, 40)
	fillJobs(t, ctx, a, "pay", queue.StateRunning, 7)
	if _, err := a.pool.Exec(ctx, `ANALYZE tasq_jobs`); err != nil {
		t.Fatal(err)
	}
	// Live jobs that ANALYZE did not see.
	fillJobs(t, ctx, a, "mail", queue.StateAvailable, 25)
	fillJobs(t, ctx, a, "pay", queue.StateScheduled, 3)
	fillJobs(t, ctx, a, "pay", queue.StateRetryable, 2)
	fillJobs(t, ctx, a, "new", queue.StateAvailable, 1)

	stats, err = a.stats(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := statsMap(stats)
	for k, n := range map[string]int64{"mail/available": 65, "pay/running": 7, "pay/scheduled": 3, "pay/retryable": 2, "new/available": 1} {
		if s := got[k]; s.Count != n || s.Estimated {
			t.Errorf("%s = %+v, want exactly %d", k, s, n)
		}
	}
	// ANALYZE read every row of so small a table: the shares are exact, and
	// the estimates as good as the row count of the cumulative statistics.
	for k, n := range map[string]int64{"mail/completed": 3000, "mail/failed": 600, "mail/cancelled": 100, "pay/completed": 1500, "pay/failed": 900} {
		s := got[k]
		if !s.Estimated || s.Count < n*9/10 || s.Count > n*11/10 {
			t.Errorf("%s = %+v, want an estimate of about %d", k, s, n)
		}
	}
	if len(stats) != 10 {
		t.Errorf("Stats = %+v, want 10 pairs", stats)
	}
}

// estimateFinished gives a finished pair that ANALYZE's most-common list
// missed what its queue and its state lack, and refuses statistics that
// cannot give an estimate.
func TestEstimateFinished(t *testing.T) {
	t.Parallel()
	live := []queue.QueueStat{{Queue: "a", State: queue.StateAvailable, Count: 1000}}
	ts := tableStats{
		// (b, cancelled) is 0.5% of the sample, but not in the list.
		pairs: []mcvItem{
			{"a", queue.StateCompleted, 0.6}, {"b", queue.StateCompleted, 0.3},
			{"a", queue.StateFailed, 0.05}, {"a", queue.StateCancelled, 0.045},
		},
		queues: map[string]float64{"a": 0.695, "b": 0.305},
		states: map[queue.JobState]float64{queue.StateCompleted: 0.9, queue.StateFailed: 0.05, queue.StateCancelled: 0.05},
	}
	out, ok := estimateFinished(1_001_000, ts, live)
	if !ok {
		t.Fatal("estimateFinished refused usable statistics")
	}
	got := statsMap(out)
	for k, n := range map[string]int64{"a/completed": 600000, "b/completed": 300000, "a/failed": 50000, "a/cancelled": 45000, "b/cancelled": 5000} {
		if s := got[k]; !s.Estimated || s.Count < n-10 || s.Count > n+10 {
			t.Errorf("%s = %+v, want an estimate of %d", k, s, n)
		}
	}
	if s := got["a/available"]; s.Count != 1000 || s.Estimated {
		t.Errorf("a/available = %+v, want the exact 1000", s)
	}
	if len(out) != 6 {
		t.Errorf("estimateFinished = %+v, want 6 pairs", out)
	}

	if _, ok := estimateFinished(1_000_000, tableStats{}, live); ok {
		t.Error("estimateFinished gave an estimate without statistics")
	}
	if _, ok := estimateFinished(0, ts, live); ok {
		t.Error("estimateFinished gave an estimate without a row count")
	}
	onlyLive := tableStats{pairs: []mcvItem{{"a", queue.StateAvailable, 1}}}
	if out, ok := estimateFinished(1_000_000, onlyLive, live); ok {
		t.Errorf("statistics of a table of live jobs, which holds 999,000 more: estimate %+v, want none", out)
	}
	if out, ok := estimateFinished(1_500, onlyLive, live); !ok || len(out) != 1 {
		t.Errorf("statistics of a table of live jobs, and about that many rows: %+v, %v; want the live counts", out, ok)
	}
}

// The live counts come from the partial indexes, never from a scan of the
// table, even when the statistics say most jobs are available.
func TestLiveStatsUsePartialIndexes(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	fillJobs(t, ctx, a, "q", queue.StateAvailable, 5000)
	if _, err := a.pool.Exec(ctx, `ANALYZE tasq_jobs`); err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	b := &pgx.Batch{}
	b.Queue(pinIndexSQL)
	b.Queue("EXPLAIN " + liveStatsSQL).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			plan.WriteString(line + "\n")
		}
		return rows.Err()
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tasq_jobs_claim_idx", "tasq_jobs_due_idx", "tasq_jobs_lease_idx"} {
		if !strings.Contains(plan.String(), want) {
			t.Errorf("live counts do not use %s:\n%s", want, plan.String())
		}
	}
	if strings.Contains(plan.String(), "Seq Scan") {
		t.Errorf("live counts scan the table:\n%s", plan.String())
	}
}

// listed is a job as TestListJobs makes it.
type listed struct {
	id         uuid.UUID
	state      queue.JobState
	queue      string
	kind       string
	dispatched time.Time
}

// TestListJobs pages through jobs with each filter, following the cursor,
// and gets each matching job once, newest first.
func TestListJobs(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	now := time.Now()
	var jobs []listed
	batch := &pgx.Batch{}
	for i := range 230 {
		// One job a minute, the newest a minute ago.
		at := now.Add(-time.Duration(230-i) * time.Minute)
		j := listed{
			state:      queue.States[i%len(queue.States)],
			queue:      []string{"mail", "pay", "img"}[i%3],
			kind:       []string{"Send", "Charge", "Resize", "Audit"}[i%4],
			dispatched: at,
		}
		j.id = v7At(t, at)
		jobs = append(jobs, j)
		batch.Queue(`INSERT INTO tasq_jobs (id, kind, queue, state, dispatched_at) VALUES ($1, $2, $3, $4, $5)`,
			j.id, j.kind, j.queue, string(j.state), j.dispatched)
	}
	if err := a.pool.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(jobs, func(x, y listed) int { return -strings.Compare(x.id.String(), y.id.String()) })

	hour := now.Add(-time.Hour)
	for _, c := range []struct {
		name  string
		f     queue.ListFilter
		match func(listed) bool
	}{
		{"all", queue.ListFilter{}, func(listed) bool { return true }},
		{"failed", queue.ListFilter{State: queue.StateFailed}, func(j listed) bool { return j.state == queue.StateFailed }},
		{"available", queue.ListFilter{State: queue.StateAvailable}, func(j listed) bool { return j.state == queue.StateAvailable }},
		{"queue pay", queue.ListFilter{Queue: "pay"}, func(j listed) bool { return j.queue == "pay" }},
		{"kind Audit", queue.ListFilter{Kind: "Audit"}, func(j listed) bool { return j.kind == "Audit" }},
		{"since 1h", queue.ListFilter{Since: hour}, func(j listed) bool { return !j.dispatched.Before(hour) }},
		{"completed, queue mail, kind Send, since 1h", queue.ListFilter{State: queue.StateCompleted, Queue: "mail", Kind: "Send", Since: hour},
			func(j listed) bool {
				return j.state == queue.StateCompleted && j.queue == "mail" && j.kind == "Send" && !j.dispatched.Before(hour)
			}},
	} {
		var want []uuid.UUID
		for _, j := range jobs {
			if c.match(j) {
				want = append(want, j.id)
			}
		}
		for _, limit := range []int{7, 100, 1000} {
			var got []uuid.UUID
			f := c.f
			f.Limit = limit
			for page := 0; ; page++ {
				list, err := a.ListJobs(ctx, f)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if len(list) > limit {
					t.Fatalf("%s: page of %d jobs, limit %d", c.name, len(list), limit)
				}
				for _, j := range list {
					got = append(got, j.ID)
				}
				if len(list) < limit || page > 300 {
					break
				}
				f.After = list[len(list)-1].ID
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s, %d a page: got %d jobs %v\nwant %d %v", c.name, limit, len(got), got, len(want), want)
			}
		}
	}

	// The default limit is 100.
	if list, err := a.ListJobs(ctx, queue.ListFilter{}); err != nil || len(list) != 100 || list[0].ID != jobs[0].id {
		t.Errorf("ListJobs() = %d jobs, %v; want the newest 100", len(list), err)
	}
	if _, err := a.ListJobs(ctx, queue.ListFilter{State: "done"}); err == nil || !strings.Contains(err.Error(), `unknown job state "done"`) {
		t.Errorf("ListJobs(state done) = %v, want an unknown-state error", err)
	}
}

// Since keeps every job dispatched since then, also one whose ID was made a
// little earlier (by a client whose clock is behind) and one whose ID is no
// UUIDv7, and only those.
func TestListJobsSince(t *testing.T) {
	t.Parallel()
	a, ctx := newInspectAdapter(t)
	now := time.Now()
	since := now.Add(-time.Hour)
	old := v7At(t, now.Add(-2*time.Hour))
	recent := v7At(t, now.Add(-10*time.Minute))
	skewed := v7At(t, since.Add(-2*time.Minute)) // dispatched after since by the database's clock
	random := uuid.MustParse("f3a0c2de-8b1e-4c4f-9d0a-6b7e5f1a2c3d")
	late := v7At(t, since.Add(-time.Minute)) // made and dispatched before since
	for id, dispatched := range map[uuid.UUID]time.Time{
		old: now.Add(-2 * time.Hour), recent: now.Add(-10 * time.Minute), skewed: since.Add(time.Second),
		random: now.Add(-5 * time.Minute), late: since.Add(-time.Minute),
	} {
		if _, err := a.pool.Exec(ctx, `INSERT INTO tasq_jobs (id, kind, dispatched_at) VALUES ($1, 'k', $2)`, id, dispatched); err != nil {
			t.Fatal(err)
		}
	}
	list, err := a.ListJobs(ctx, queue.ListFilter{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	var got []uuid.UUID
	for _, j := range list {
		got = append(got, j.ID)
	}
	if want := []uuid.UUID{random, recent, skewed}; !slices.Equal(got, want) {
		t.Errorf("ListJobs(since 1h) = %v, want %v (the random ID sorts first)", got, want)
	}
}

// sinceFloor is no larger than an ID made at since, and larger than one
// made sinceSlack before.
func TestSinceFloor(t *testing.T) {
	t.Parallel()
	since := time.Now()
	floor := sinceFloor(since)
	if floor.Version() != 7 {
		t.Errorf("sinceFloor = %s, version %d; want a UUIDv7", floor, floor.Version())
	}
	for _, c := range []struct {
		at    time.Time
		above bool
	}{
		{since, true}, {since.Add(-sinceSlack + time.Millisecond), true},
		{since.Add(-sinceSlack - time.Millisecond), false}, {since.Add(-24 * time.Hour), false},
	} {
		id := v7At(t, c.at)
		if above := strings.Compare(id.String(), floor.String()) >= 0; above != c.above {
			t.Errorf("ID made %v before since: at or above the floor %v, want %v", since.Sub(c.at), above, c.above)
		}
	}
	if got := sinceFloor(time.Unix(60, 0)); got != uuid.Nil {
		t.Errorf("sinceFloor(1970) = %s, want no bound", got)
	}
}

// v7At returns a UUIDv7 as TasQ makes them, as if made at at.
func v7At(t *testing.T, at time.Time) uuid.UUID {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	ms := at.UnixMilli()
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (8 * (5 - i)))
	}
	return id
}

// ListJobs walks the primary key: the state is a literal (so that the
// planner can match it against the partial indexes' predicates), the other
// filters are parameters, the cursor a bound on the ID.
func TestListQuery(t *testing.T) {
	t.Parallel()
	after := uuid.MustParse("0190f5c2-5d6e-7c3a-9b1e-2f4d6a8c0e13")
	q, args, err := listQuery(queue.ListFilter{State: queue.StateFailed, Kind: "SendEmail", Limit: 50, After: after})
	if err != nil {
		t.Fatal(err)
	}
	if want := `FROM tasq_jobs WHERE state = 'failed' AND kind = $1 AND id < $2 ORDER BY id DESC LIMIT $3`; !strings.HasSuffix(q, want) {
		t.Errorf("listQuery = %q, want it to end %q", q, want)
	}
	if !slices.Equal(args, []any{"SendEmail", after, 50}) {
		t.Errorf("listQuery args = %v", args)
	}
}
