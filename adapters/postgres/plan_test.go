package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/internal/testpg"
)

// explainPinned returns the plan of sql as a worker runs it: after
// pinnedPlanSQL, in one pipeline.
func explainPinned(t *testing.T, conn *pgxpool.Conn, sql string, args ...any) string {
	t.Helper()
	var plan strings.Builder
	b := &pgx.Batch{}
	b.Queue(pinnedPlanSQL)
	b.Queue("EXPLAIN "+sql, args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			plan.WriteString(line + "\n")
		}
		return rows.Err()
	})
	if err := conn.SendBatch(context.Background(), b).Close(); err != nil {
		t.Fatalf("explain: %v", err)
	}
	return plan.String()
}

// The statements a worker repeats keep index plans on a table whose
// statistics say nothing (it was empty when analyzed) while it holds many
// finished and running jobs — the situation in which the planner chose plans
// that scanned the whole table or every running job. The settings end with
// the statement.
func TestWorkerStatementsKeepIndexPlans(t *testing.T) {
	ctx := context.Background()
	a, err := New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, q := range []string{
		`ANALYZE tasq_jobs`, // while empty: the statistics now mislead
		`INSERT INTO tasq_jobs (id, kind, state, attempt, attempted_by, lease_expires_at)
		 SELECT gen_random_uuid(), 'k', (CASE WHEN i % 10 = 0 THEN 'running' WHEN i % 100 = 1 THEN 'available'
		        ELSE 'completed' END)::tasq_job_state, 1, 'w', now() + interval '1 hour'
		 FROM generate_series(1, 30000) AS i`,
	} {
		if _, err := a.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := a.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	ids := make([]pgtype.UUID, 500)
	for i := range ids {
		ids[i] = pgUUID(uuid.New())
	}
	ints, strs, nums, bools := make([]int32, 500), make([]string, 500), make([]int64, 500), make([]bool, 500)
	for name, c := range map[string]struct {
		sql  string
		args []any
		want []string
	}{
		"finish":           {finishSQL, []any{ids, nums, strs, strs, strs, nums, bools, ints, "w", 20, true}, []string{"Function Scan on u", "Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
		"finish completed": {finishCompletedSQL, []any{ids, nums, "w", strs}, []string{"Function Scan on u", "Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
		"finish quiet":     {finishCompletedQuietSQL, []any{ids, nums, "w", strs}, []string{"Function Scan on u", "Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
		"claim":            {claimSQL, []any{"default", 2000, "w", int64(30000), nil}, []string{"tasq_jobs_claim_idx", "Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
		"claim kinds":      {claimSQL, []any{"default", 2000, "w", int64(30000), []string{"k", "other"}}, []string{"tasq_jobs_claim_idx", "Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
		"claim hinted":     {claimHintedSQL, []any{"default", 2000, "w", int64(30000), nil, int16(0), time.Now(), uuid.New()}, []string{"tasq_jobs_claim_idx", "Index Scan using tasq_jobs_pkey on tasq_jobs j", "Index Cond: ((queue = 'default'::text) AND (priority = '0'::smallint) AND (ROW(run_at, id) > ROW("}},
		"extend lease":     {extendSQL, []any{ids, nums, "w", int64(30000)}, []string{"Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
		"promote":          {promoteSQL, []any{maintainBatch, a.sql.channel}, []string{"tasq_jobs_due_idx", "Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
		"rescue":           {rescueSQL, []any{maintainBatch, a.sql.channel, "lease expired {worker}", 20}, []string{"tasq_jobs_lease_idx", "Index Scan using tasq_jobs_pkey on tasq_jobs j"}},
	} {
		plan := explainPinned(t, conn, a.sql.q(c.sql), c.args...)
		for _, w := range c.want {
			if !strings.Contains(plan, w) {
				t.Errorf("%s plan lacks %q:\n%s", name, w, plan)
			}
		}
		for _, bad := range []string{"Seq Scan on tasq_jobs", "Hash Join", "Bitmap Heap Scan"} {
			if strings.Contains(plan, bad) {
				t.Errorf("%s plan has %q:\n%s", name, bad, plan)
			}
		}
	}
	var after string
	if err := conn.QueryRow(ctx, `SHOW enable_hashjoin`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != "on" {
		t.Errorf("enable_hashjoin after a pinned statement is %q; the setting leaked", after)
	}
}

// The completion and the lease renewal look each job up by primary key even
// when the statistics say that the worker finishing holds no row: an ANALYZE
// that saw only rows of other workers (after a burn-down, or before a worker
// restarted under a new ID). With the worker as a filter on tasq_jobs, the
// planner estimated one running row and made tasq_jobs the outer side of the
// nested loop, scanning the whole primary key and the outcome array once per
// running job: seconds per batch (issue 13).
func TestFinishPlanSurvivesStatisticsOfOtherWorkers(t *testing.T) {
	ctx := context.Background()
	a, err := New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, q := range []string{
		// IDs in insertion order, as UUIDv7s are: the primary key is then
		// correlated with the heap and a full scan of it looks cheap.
		`INSERT INTO tasq_jobs (id, kind, state, attempt, attempted_by, finished_at)
		 SELECT lpad(to_hex(i), 32, '0')::uuid, 'k', 'completed', 1, 'old-worker', now() FROM generate_series(1, 10000) AS i`,
		`ANALYZE tasq_jobs`, // every row is old-worker's
		`DELETE FROM tasq_jobs`,
		`INSERT INTO tasq_jobs (id, kind, state, attempt, attempted_by, lease_expires_at)
		 SELECT lpad(to_hex(100000 + i), 32, '0')::uuid, 'k', (CASE WHEN i % 10 = 0 THEN 'running' ELSE 'available' END)::tasq_job_state,
		        1, CASE WHEN i % 10 = 0 THEN 'w' END, now() + interval '1 hour'
		 FROM generate_series(1, 20000) AS i`,
	} {
		if _, err := a.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := a.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	const n = 700
	ids := make([]pgtype.UUID, n)
	for i := range ids {
		ids[i] = pgUUID(uuid.New())
	}
	ints, strs, nums, bools := make([]int32, n), make([]string, n), make([]int64, n), make([]bool, n)
	for name, c := range map[string]struct {
		sql  string
		args []any
		want string
	}{
		"finish":           {finishSQL, []any{ids, nums, strs, strs, strs, nums, bools, ints, "w", 20, true}, "Index Cond: (id = u.id)"},
		"finish completed": {finishCompletedSQL, []any{ids, nums, "w", strs}, "Index Cond: (id = u.id)"},
		"finish quiet":     {finishCompletedQuietSQL, []any{ids, nums, "w", strs}, "Index Cond: (id = u.id)"},
		"extend lease":     {extendSQL, []any{ids, nums, "w", int64(30000)}, "Index Cond: (id = l.id)"},
	} {
		plan := explainPinned(t, conn, a.sql.q(c.sql), c.args...)
		if !strings.Contains(plan, c.want) || strings.Contains(plan, "Join Filter") {
			t.Errorf("%s: the plan does not look each outcome up by primary key (%q, no Join Filter):\n%s", name, c.want, plan)
		}
	}
}
