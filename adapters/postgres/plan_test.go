package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/internal/testpg"
)

// The planner settings of Finish hold for its update and end with it, and
// they give the update one primary-key lookup per outcome, never a scan of
// the running jobs.
func TestFinishPlanLooksUpByPrimaryKeyAndItsSettingsDoNotLeak(t *testing.T) {
	ctx := context.Background()
	a, err := New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// The situation that fooled the planner: many running jobs, no statistics.
	if _, err := a.pool.Exec(ctx, `INSERT INTO tasq_jobs (id, kind, state, attempt, attempted_by)
		SELECT gen_random_uuid(), 'k', 'running', 1, 'w' FROM generate_series(1, 20000)`); err != nil {
		t.Fatal(err)
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
	ints, strs, nums := make([]int32, 500), make([]string, 500), make([]int64, 500)
	var plan, inside, after string
	b := &pgx.Batch{}
	b.Queue(finishPlanSQL)
	b.Queue(`EXPLAIN `+finishSQL, ids, ints, strs, strs, strs, nums, "w").Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			plan += line + "\n"
		}
		return rows.Err()
	})
	b.Queue(`SHOW enable_hashjoin`).QueryRow(func(r pgx.Row) error { return r.Scan(&inside) })
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SHOW enable_hashjoin`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if inside != "off" || after != "on" {
		t.Errorf("enable_hashjoin inside the batch %q, after it %q; want off, then on again", inside, after)
	}
	if !strings.Contains(plan, "Function Scan on u") || !strings.Contains(plan, "Index Scan using tasq_jobs_pkey on tasq_jobs j") ||
		strings.Contains(plan, "lease_idx") || strings.Contains(plan, "Seq Scan") {
		t.Errorf("finish plan does not look the outcomes up by primary key:\n%s", plan)
	}
}
