package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/migrations"
)

// Every rule of tasq_jobs_valid (migration 12) refuses a row that breaks
// it, written by INSERT or by UPDATE, with SQLSTATE 23514 and a message
// naming the rule; a row using every optional column correctly is stored.
func TestRowCheckNamesTheRuleBroken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	pool := a.Pool()

	good := uuid.New()
	if _, err := pool.Exec(ctx, `INSERT INTO tasq_jobs (id, kind, queue, meta, tags, depends_on, deps_waiting, dep_policy, unique_key, unique_states)
		VALUES ($1, 'k', 'q', '{"a":1}', '{x,y}', ARRAY[$2::uuid], ARRAY[$2::uuid], 'run', '\x01', 1)`, good, uuid.New()); err != nil {
		t.Fatalf("a row keeping every rule: %v", err)
	}

	cases := []struct{ name, set, rule string }{
		{"kind", `kind = ''`, "kind is empty"},
		{"queue", `queue = ''`, "queue is empty"},
		{"attempt negative", `attempt = -1`, "attempt is -1"},
		{"attempt at the maximum", `attempt = 2147483647`, "attempt is 2147483647"},
		{"max_retries", `max_retries = 1000001`, "max_retries is 1000001"},
		{"max_retries negative", `max_retries = -1`, "max_retries is -1"},
		{"claim_token", `claim_token = -1`, "claim_token is -1"},
		{"errors_omitted", `errors_omitted = -1`, "errors_omitted is -1"},
		{"retry_delay_ms", `retry_delay_ms = 9223372036855`, "retry_delay_ms is 9223372036855"},
		{"retry_delay_ms negative", `retry_delay_ms = -1`, "retry_delay_ms is -1"},
		{"timeout_ms", `timeout_ms = -5`, "timeout_ms is -5"},
		{"run_at", `run_at = 'infinity'`, "run_at is infinity"},
		{"dispatched_at", `dispatched_at = '-infinity'`, "dispatched_at is -infinity"},
		{"meta", `meta = '[1]'`, "meta is a JSON array"},
		{"tags", `tags = ARRAY['a', NULL]`, "tags holds a NULL"},
		{"deps pair", `dep_policy = NULL`, "depends_on and dep_policy must be both NULL or both set"},
		{"dep_policy", `dep_policy = 'maybe'`, "dep_policy is 'maybe'"},
		{"depends_on", `depends_on = ARRAY[NULL::uuid]`, "depends_on holds a NULL"},
		{"deps_waiting", `deps_waiting = ARRAY[NULL::uuid]`, "deps_waiting holds a NULL"},
		{"unique pair", `unique_states = NULL`, "unique_key and unique_states must be both NULL or both set"},
		{"unique_key empty", `unique_key = ''`, "unique_key is 0 bytes"},
		{"unique_key long", `unique_key = convert_to(repeat('x', 257), 'UTF8')`, "unique_key is 257 bytes"},
	}
	for _, c := range cases {
		// The bad value by UPDATE of the good row, and by INSERT of a copy
		// of the good row that holds it.
		for _, how := range []string{"UPDATE", "INSERT"} {
			var err error
			if how == "UPDATE" {
				_, err = pool.Exec(ctx, `UPDATE tasq_jobs SET `+c.set+` WHERE id = $1`, good)
			} else {
				tx, terr := pool.Begin(ctx)
				if terr != nil {
					t.Fatal(terr)
				}
				if _, terr = tx.Exec(ctx, `CREATE TEMP TABLE bad ON COMMIT DROP AS SELECT * FROM tasq_jobs WHERE id = $1`, good); terr != nil {
					t.Fatal(terr)
				}
				if _, terr = tx.Exec(ctx, `UPDATE bad SET id = gen_random_uuid(), `+c.set); terr != nil {
					t.Fatalf("%s: prepare the bad row: %v", c.name, terr)
				}
				_, err = tx.Exec(ctx, `INSERT INTO tasq_jobs SELECT * FROM bad`)
				_ = tx.Rollback(ctx)
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != "tasq_jobs_valid" ||
				!strings.Contains(pgErr.Message, `violates check constraint "tasq_jobs_valid": `+c.rule) {
				t.Errorf("%s by %s: err = %v; want SQLSTATE 23514 on tasq_jobs_valid naming %q", c.name, how, err, c.rule)
			}
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows stored: %d, %v; want only the good one", n, err)
	}
}

// Migration 12 goes down to the eighteen constraints over a table holding
// jobs (validating those that were validated) and up again to the one,
// keeping every row.
func TestRowCheckMigrationRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testpg.NewEmptyDatabase(t)
	if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO tasq_jobs (id, kind, queue, meta, tags, unique_key, unique_states)
		SELECT gen_random_uuid(), 'k', 'q', '{"a":1}', '{x}', convert_to(i::text, 'UTF8'), 1 FROM generate_series(1, 500) i`); err != nil {
		t.Fatal(err)
	}
	checks := func() (names []string, validated int) {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT conname, convalidated FROM pg_constraint
			WHERE conrelid = 'tasq_jobs'::regclass AND contype = 'c' ORDER BY conname`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			var v bool
			if err := rows.Scan(&n, &v); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
			if v {
				validated++
			}
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		return names, validated
	}
	if names, _ := checks(); len(names) != 1 || names[0] != "tasq_jobs_valid" {
		t.Fatalf("CHECKs at version 12: %v; want tasq_jobs_valid alone", names)
	}
	if err := migrations.Steps(ctx, dsn, -1); err != nil {
		t.Fatalf("down: %v", err)
	}
	// 11 validated by migrations 1 and 2, 7 NOT VALID from migrations 9 and 10.
	if names, validated := checks(); len(names) != 18 || validated != 11 {
		t.Fatalf("CHECKs after down: %d, %d validated (%v); want 18, 11 validated", len(names), validated, names)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO tasq_jobs (id, kind) VALUES (gen_random_uuid(), '')`); err == nil ||
		!strings.Contains(err.Error(), "tasq_jobs_kind_check") {
		t.Fatalf("an empty kind at version 11: %v; want tasq_jobs_kind_check", err)
	}
	if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if names, _ := checks(); len(names) != 1 || names[0] != "tasq_jobs_valid" {
		t.Fatalf("CHECKs after up again: %v", names)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n); err != nil || n != 500 {
		t.Fatalf("rows after down and up: %d, %v; want 500", n, err)
	}
}
