package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/testpg"
)

// Poll-only mode's statement walks the claim index one queue at a time,
// whatever the statistics say, so that its cost does not grow with the
// jobs that wait.
func TestWakePollKeepsIndexPlan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, q := range []string{
		`ANALYZE tasq_jobs`, // while empty: the statistics now mislead
		`INSERT INTO tasq_jobs (id, kind, queue, state)
		 SELECT gen_random_uuid(), 'k', 'q' || (i % 7), (CASE WHEN i % 3 = 0 THEN 'available' ELSE 'completed' END)::tasq_job_state
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
	plan := explainPinned(t, conn, headsSQL)
	for _, w := range []string{"Recursive Union", "Index Scan using tasq_jobs_claim_idx", "Index Cond: (queue > "} {
		if !strings.Contains(plan, w) {
			t.Errorf("the wake poll's plan lacks %q:\n%s", w, plan)
		}
	}
	for _, bad := range []string{"Seq Scan on tasq_jobs", "Sort", "Bitmap Heap Scan"} {
		if strings.Contains(plan, bad) {
			t.Errorf("the wake poll's plan has %q:\n%s", bad, plan)
		}
	}
	heads, err := a.availableHeads(ctx, DefaultWakePollInterval)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 7 {
		t.Errorf("availableHeads found %d queues; want 7", len(heads))
	}
}

func TestTakeParams(t *testing.T) {
	params := map[string]string{"application_name": "app", ParamPooler: "transaction", ParamListenURL: "postgres://db/app", ParamWakePoll: "50ms"}
	var o options
	if err := takeParams(params, &o); err != nil {
		t.Fatal(err)
	}
	if o.pooler != PoolerTransaction || o.listenURL != "postgres://db/app" || o.wakePoll.Milliseconds() != 50 {
		t.Errorf("options %+v", o)
	}
	if len(params) != 1 || params["application_name"] != "app" {
		t.Errorf("params left for the server: %v; want only application_name", params)
	}
	if err := takeParams(map[string]string{"tasq_listen": "x", "tasq_pool": "y"}, &o); err == nil || !strings.Contains(err.Error(), "tasq_listen, tasq_pool") {
		t.Errorf("unknown parameters: %v", err)
	}
}

func TestSafeBehindTransactionPooler(t *testing.T) {
	for _, c := range []struct {
		mode    pgx.QueryExecMode
		managed bool
		want    bool
	}{
		{pgx.QueryExecModeCacheStatement, false, false},
		{pgx.QueryExecModeCacheStatement, true, true},
		{pgx.QueryExecModeDescribeExec, true, false},
		{pgx.QueryExecModeCacheDescribe, false, true},
		{pgx.QueryExecModeExec, false, true},
		{pgx.QueryExecModeSimpleProtocol, false, true},
	} {
		if got := safeBehindTransactionPooler(c.mode, c.managed); got != c.want {
			t.Errorf("safeBehindTransactionPooler(%s, names managed %v) = %v; want %v", c.mode, c.managed, got, c.want)
		}
	}
}
