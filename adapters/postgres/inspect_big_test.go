package postgres

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

// bigFillSQL inserts jobs $1 to $2 of a table of $3 jobs dispatched over the
// last 30 days, oldest first, with UUIDv7 IDs made from their dispatch
// times, as TasQ makes them:
//   - 5 queues: default 40%, emails 25%, payments 15%, reports 12%, webhooks 8%;
//   - 10 kinds: 9 from 30% (SendEmail) down to 2.5% (CleanupTemp), spread
//     over the whole table, and LegacyImport, 1,000 jobs among the oldest 1%
//     (a rare kind a listing has to walk the whole table for);
//   - live jobs among the newest: 20,000 available and 2,000 running in the
//     newest 100,000; 5,000 scheduled and 1,000 retryable in the newest
//     1,000,000;
//   - the rest finished: 8% of payments and 1.5% of the other queues failed,
//     1% cancelled, the others (about 96% of the table) completed.
//
// Queue, kind and outcome come from independent hashes of the job's number.
const bigFillSQL = `
INSERT INTO tasq_jobs (id, kind, queue, state, payload, result, attempt, run_at, dispatched_at,
                       attempted_at, attempted_by, lease_expires_at, finished_at, errors, claim_token)
SELECT encode(overlay(uuid_send(gen_random_uuid())
                      PLACING substring(int8send((extract(epoch FROM t) * 1000)::bigint) FROM 3) || '\x7000'::bytea
                      FROM 1 FOR 8), 'hex')::uuid,
       kind, queue, state, '{"to": "someone@example.com", "template": "welcome"}',
       CASE WHEN state = 'completed' THEN '{"ok": true}'::jsonb END,
       CASE state WHEN 'failed' THEN 4 WHEN 'available' THEN 0 WHEN 'scheduled' THEN 0 ELSE 1 END,
       CASE state WHEN 'scheduled' THEN now() + (i % 1440) * interval '1 minute'
                  WHEN 'retryable' THEN now() + interval '1 minute' ELSE t END,
       t,
       CASE WHEN state NOT IN ('available', 'scheduled') THEN t + interval '1 second' END,
       CASE WHEN state NOT IN ('available', 'scheduled') THEN 'worker-' || (i % 8) END,
       CASE WHEN state = 'running' THEN now() + interval '5 minutes' END,
       CASE WHEN state IN ('completed', 'failed', 'cancelled') THEN t + interval '2 seconds' END,
       CASE state WHEN 'failed' THEN jsonb_build_array(jsonb_build_object('attempt', 4, 'at', t, 'error', 'card declined'))
                  WHEN 'retryable' THEN jsonb_build_array(jsonb_build_object('attempt', 1, 'at', t, 'error', 'timeout'))
                  ELSE '[]'::jsonb END,
       CASE state WHEN 'failed' THEN 4 WHEN 'available' THEN 0 WHEN 'scheduled' THEN 0 ELSE 1 END
FROM (
    SELECT i, t, queue,
           CASE WHEN i <= $3::bigint / 100 AND i % 100 = 0 THEN 'LegacyImport'
                ELSE (ARRAY['SendEmail', 'ChargeCard', 'RenderReport', 'SyncCRM', 'ResizeImage',
                            'IndexDocument', 'SendWebhook', 'GenerateInvoice', 'CleanupTemp'])[
                     CASE WHEN k < 300 THEN 1 WHEN k < 500 THEN 2 WHEN k < 650 THEN 3 WHEN k < 750 THEN 4
                          WHEN k < 830 THEN 5 WHEN k < 890 THEN 6 WHEN k < 940 THEN 7 WHEN k < 975 THEN 8 ELSE 9 END]
           END AS kind,
           (CASE WHEN r < 100000 AND i % 5 = 0 THEN 'available'
                 WHEN r < 100000 AND i % 50 = 1 THEN 'running'
                 WHEN r < 1000000 AND i % 200 = 3 THEN 'scheduled'
                 WHEN r < 1000000 AND i % 1000 = 7 THEN 'retryable'
                 WHEN f < CASE WHEN queue = 'payments' THEN 80 ELSE 15 END THEN 'failed'
                 WHEN f >= 990 THEN 'cancelled'
                 ELSE 'completed' END)::tasq_job_state AS state
    FROM (
        SELECT i, $3::bigint - i AS r, now() - interval '30 days' + i * (interval '30 days' / $3::float8) AS t,
               (ARRAY['default', 'emails', 'payments', 'reports', 'webhooks'])[
                   CASE WHEN q < 400 THEN 1 WHEN q < 650 THEN 2 WHEN q < 800 THEN 3 WHEN q < 920 THEN 4 ELSE 5 END] AS queue,
               k, f
        FROM (SELECT i, (hashint8extended(i, 1) & 1048575) % 1000 AS q, (hashint8extended(i, 2) & 1048575) % 1000 AS k,
                     (hashint8extended(i, 3) & 1048575) % 1000 AS f
              FROM generate_series($1::bigint, $2::bigint) AS i) AS h
    ) AS a
) AS b`

// TestInspectAtScale times Stats and ListJobs on a table of ten million jobs
// (TASQ_BIG_ROWS to change it), with the plan of every statement. It is
// skipped unless TASQ_BIG=1: building the table takes a few minutes and 3 GB.
//
//	TASQ_BIG=1 go test -run TestInspectAtScale -v -timeout 60m ./adapters/postgres/
//
// TASQ_BIG_DSN names a database to use instead of a fresh one: the test
// migrates it and fills it when tasq_jobs is empty, and leaves it filled, so
// that the next run measures at once. TASQ_BIG_REPORT names a file to write
// the timings and plans to as well.
//
// The table is built as a busy one looks: filled (bigFillSQL), vacuumed and
// analyzed as autovacuum would have, then the live jobs rewritten once (as
// their dispatch or claim did), so that their pages are not all-visible.
func TestInspectAtScale(t *testing.T) {
	if os.Getenv("TASQ_BIG") != "1" {
		t.Skip("set TASQ_BIG=1 to build a table of ten million jobs and time tasq stats and tasq jobs list on it")
	}
	ctx := context.Background()
	rows := int64(10_000_000)
	if s := os.Getenv("TASQ_BIG_ROWS"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1_000_000 {
			t.Fatalf("TASQ_BIG_ROWS=%q: give a number of rows, at least 1000000", s)
		}
		rows = n
	}
	dsn := os.Getenv("TASQ_BIG_DSN")
	if dsn == "" {
		dsn = testpg.NewDatabase(t)
	} else if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatalf("migrate TASQ_BIG_DSN: %v", err)
	}
	a, err := New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := a.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", strings.Fields(sql)[0], err)
		}
	}
	var filled bool
	if err := a.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM tasq_jobs)`).Scan(&filled); err != nil {
		t.Fatal(err)
	}
	if !filled {
		start := time.Now()
		const chunk = 1_000_000
		for lo := int64(1); lo <= rows; lo += chunk {
			exec(bigFillSQL, lo, min(lo+chunk-1, rows), rows)
			t.Logf("filled %d of %d jobs (%v)", min(lo+chunk-1, rows), rows, time.Since(start).Round(time.Second))
		}
		exec(`VACUUM (ANALYZE) tasq_jobs`)
		exec(`UPDATE tasq_jobs SET claim_token = claim_token WHERE state IN ('scheduled', 'available', 'running', 'retryable')`)
		t.Logf("built in %v", time.Since(start).Round(time.Second))
	}

	var report strings.Builder
	logf := func(format string, args ...any) {
		t.Logf(format, args...)
		fmt.Fprintf(&report, format+"\n", args...)
	}
	defer func() {
		if path := os.Getenv("TASQ_BIG_REPORT"); path != "" {
			if err := os.WriteFile(path, []byte(report.String()), 0o644); err != nil {
				t.Errorf("write TASQ_BIG_REPORT: %v", err)
			}
		}
	}()
	var version, size string
	if err := a.pool.QueryRow(ctx, `SELECT current_setting('server_version'),
	    pg_size_pretty(pg_total_relation_size('tasq_jobs'))`).Scan(&version, &size); err != nil {
		t.Fatal(err)
	}
	logf("PostgreSQL %s, tasq_jobs with indexes %s, about %d jobs", version, size, rows)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		logf("load average before: %s", strings.TrimSpace(string(load)))
		defer func() {
			load, _ := os.ReadFile("/proc/loadavg")
			logf("load average after: %s", strings.TrimSpace(string(load)))
		}()
	}

	// One case is one call, timed over several runs after a warm-up.
	type result struct {
		name            string
		median, slowest time.Duration
		rows            int
		plan            string
		expectSlow      string // why it may take long; "" if it must stay under the bound
	}
	var results []result
	const bound = 100 * time.Millisecond
	timeIt := func(runs int, call func() (int, error)) (time.Duration, time.Duration, int) {
		t.Helper()
		n, err := call() // warm-up
		if err != nil {
			t.Fatal(err)
		}
		var took []time.Duration
		for range runs {
			start := time.Now()
			if _, err := call(); err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[len(took)/2], took[len(took)-1], n
	}
	explain := func(stmts ...string) string {
		t.Helper()
		var plan strings.Builder
		b := &pgx.Batch{}
		for _, s := range stmts {
			if strings.HasPrefix(s, "SELECT set_config") {
				b.Queue(s)
				continue
			}
			b.Queue("EXPLAIN (ANALYZE, BUFFERS) " + s).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var line string
					if err := rows.Scan(&line); err != nil {
						return err
					}
					plan.WriteString("    " + line + "\n")
				}
				return rows.Err()
			})
		}
		if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("explain: %v", err)
		}
		return plan.String()
	}

	// Stats.
	var stats []queue.QueueStat
	md, slow, n := timeIt(7, func() (int, error) {
		var err error
		stats, err = a.Stats(ctx)
		return len(stats), err
	})
	results = append(results, result{name: "Stats (live exact, finished estimated)", median: md, slowest: slow, rows: n,
		plan: explain(tableSizeSQL, queueStateMCVSQL, columnMCVSQL, pinIndexSQL, liveStatsSQL)})
	start := time.Now()
	exact, err := a.stats(ctx, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	exactTook := time.Since(start)
	results = append(results, result{name: "every row counted (the old Stats, for comparison)", median: exactTook, slowest: exactTook,
		rows: len(exact), plan: explain(exactStatsSQL), expectSlow: "reads the whole table"})

	// How far the estimates are from the counts.
	logf("\nStats at %d jobs: estimate vs count", rows)
	got := map[string]queue.QueueStat{}
	for _, s := range stats {
		got[s.Queue+"/"+string(s.State)] = s
	}
	for _, e := range exact {
		key := e.Queue + "/" + string(e.State)
		s, ok := got[key]
		switch {
		case !isFinished(e.State) && (s.Count != e.Count || s.Estimated):
			t.Errorf("%s: Stats says %d (estimated %v), want exactly %d", key, s.Count, s.Estimated, e.Count)
		case isFinished(e.State) && (!ok || !s.Estimated):
			t.Errorf("%s: Stats says %+v, want an estimate of %d", key, s, e.Count)
		}
		logf("  %-20s %10d  %10d  %+6.1f%%  estimated=%v", key, s.Count, e.Count, 100*float64(s.Count-e.Count)/float64(e.Count), s.Estimated)
	}

	// ListJobs.
	var mid, deep uuid.UUID
	if err := a.pool.QueryRow(ctx, `SELECT id FROM tasq_jobs ORDER BY id DESC OFFSET $1 LIMIT 1`, rows/2).Scan(&mid); err != nil {
		t.Fatal(err)
	}
	if err := a.pool.QueryRow(ctx, `SELECT id FROM tasq_jobs ORDER BY id DESC OFFSET $1 LIMIT 1`, rows-rows/100).Scan(&deep); err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name       string
		f          queue.ListFilter
		expectSlow string
	}{
		{"newest 100", queue.ListFilter{}, ""},
		{"after the 5,000,000th", queue.ListFilter{After: mid}, ""},
		{"after the 9,900,000th", queue.ListFilter{After: deep}, ""},
		{"state available (20k, newest)", queue.ListFilter{State: queue.StateAvailable}, ""},
		{"state running (2k)", queue.ListFilter{State: queue.StateRunning}, ""},
		{"state scheduled (5k)", queue.ListFilter{State: queue.StateScheduled}, ""},
		{"state retryable (1k)", queue.ListFilter{State: queue.StateRetryable}, ""},
		{"state completed (96%)", queue.ListFilter{State: queue.StateCompleted}, ""},
		{"state failed (2.4%)", queue.ListFilter{State: queue.StateFailed}, ""},
		{"state cancelled (1%)", queue.ListFilter{State: queue.StateCancelled}, ""},
		{"state failed, after the 5,000,000th", queue.ListFilter{State: queue.StateFailed, After: mid}, ""},
		{"state available, queue emails", queue.ListFilter{State: queue.StateAvailable, Queue: "emails"}, ""},
		{"state failed, queue payments", queue.ListFilter{State: queue.StateFailed, Queue: "payments"}, ""},
		{"queue webhooks (8%)", queue.ListFilter{Queue: "webhooks"}, ""},
		{"queue webhooks, after the 5,000,000th", queue.ListFilter{Queue: "webhooks", After: mid}, ""},
		{"kind SendEmail (30%)", queue.ListFilter{Kind: "SendEmail"}, ""},
		{"kind CleanupTemp (2.5%)", queue.ListFilter{Kind: "CleanupTemp"}, ""},
		{"kind CleanupTemp, state failed (0.06%)", queue.ListFilter{Kind: "CleanupTemp", State: queue.StateFailed},
			"1 job in 1,700 matches: the walk reads 170,000 for a page"},
		{"since 1h", queue.ListFilter{Since: hourAgo}, ""},
		{"since 1h, kind CleanupTemp", queue.ListFilter{Since: hourAgo, Kind: "CleanupTemp"}, ""},
		{"since 1h, kind NoSuchKind", queue.ListFilter{Since: hourAgo, Kind: "NoSuchKind"}, ""},
		{"kind LegacyImport (1k, all among the oldest 1%)", queue.ListFilter{Kind: "LegacyImport"}, "a rare kind: the walk reads 99% of the table"},
		{"kind NoSuchKind", queue.ListFilter{Kind: "NoSuchKind"}, "no job matches: the walk reads the whole table"},
	} {
		runs := 7
		if c.expectSlow != "" {
			runs = 2
		}
		md, slow, n := timeIt(runs, func() (int, error) {
			jobs, err := a.ListJobs(ctx, c.f)
			return len(jobs), err
		})
		q, args, err := listQuery(c.f)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, result{name: "ListJobs " + c.name, median: md, slowest: slow, rows: n,
			plan: explainArgs(t, ctx, a, q, args), expectSlow: c.expectSlow})
	}

	// A walk of 100 pages, each from the cursor the last one ended at.
	start = time.Now()
	var after uuid.UUID
	seen := 0
	for range 100 {
		jobs, err := a.ListJobs(ctx, queue.ListFilter{State: queue.StateFailed, After: after})
		if err != nil {
			t.Fatal(err)
		}
		seen += len(jobs)
		after = jobs[len(jobs)-1].ID
	}
	perPage := time.Since(start) / 100
	results = append(results, result{name: "ListJobs state failed, 100 pages one after the other (time per page)", median: perPage, slowest: perPage, rows: seen / 100})

	logf("\n%-75s %10s %10s %6s", "call", "median", "slowest", "rows")
	for _, r := range results {
		mark := ""
		switch {
		case r.expectSlow != "":
			mark = "  (" + r.expectSlow + ")"
		case r.median > bound:
			mark = "  SLOWER THAN " + bound.String()
			t.Errorf("%s: median %v, want under %v", r.name, r.median, bound)
		}
		logf("%-75s %10s %10s %6d%s", r.name, fmtMS(r.median), fmtMS(r.slowest), r.rows, mark)
	}
	logf("\nplans (EXPLAIN (ANALYZE, BUFFERS), run after the timings):")
	for _, r := range results {
		if r.plan != "" {
			logf("\n%s:\n%s", r.name, r.plan)
		}
	}
}

// explainArgs returns EXPLAIN (ANALYZE, BUFFERS) of sql with args, run as
// ListJobs runs it (after serialPlanSQL).
func explainArgs(t *testing.T, ctx context.Context, a *Adapter, sql string, args []any) string {
	t.Helper()
	var lines []string
	b := &pgx.Batch{}
	b.Queue(serialPlanSQL)
	b.Queue("EXPLAIN (ANALYZE, BUFFERS) "+sql, args...).Query(func(rows pgx.Rows) error {
		var err error
		lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatalf("explain %s: %v", sql, err)
	}
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

// fmtMS prints d in milliseconds with one decimal.
func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
