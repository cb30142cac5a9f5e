package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

// Tests of migration 10: job dependencies (queue.After), released by the
// trigger tasq_jobs_release_dependants.

// state returns the state of job id.
func (e *uniqueEnv) state(t *testing.T, id uuid.UUID) queue.JobState {
	t.Helper()
	var s string
	if err := e.pool.QueryRow(e.ctx, `SELECT state::text FROM `+e.table()+` WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatalf("state of %s: %v", id, err)
	}
	return queue.JobState(s)
}

// sqlFinish moves job id to state with a plain SQL UPDATE, as a program in
// another language or an operator in psql would.
func (e *uniqueEnv) sqlFinish(t *testing.T, id uuid.UUID, state queue.JobState) {
	t.Helper()
	if _, err := e.pool.Exec(e.ctx, `UPDATE `+e.table()+` SET state = $2::text::`+strings.Replace(e.table(), "tasq_jobs", "tasq_job_state", 1)+`, finished_at = now() WHERE id = $1`, id, string(state)); err != nil {
		t.Fatalf("finish %s as %s: %v", id, state, err)
	}
}

// newUniqueEnvAt is newUniqueEnv on the database at dsn.
func newUniqueEnvAt(t *testing.T, dsn string) *uniqueEnv {
	t.Helper()
	e := &uniqueEnv{ctx: context.Background(), dsn: dsn}
	a, err := postgres.New(e.ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	e.a, e.pool = a, a.Pool()
	if e.c, err = queue.NewClient(a); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *uniqueEnv) id(t *testing.T, task any, opts ...queue.DispatchOption) uuid.UUID {
	t.Helper()
	return e.dispatch(t, task, opts...).ID
}

func wantState(t *testing.T, e *uniqueEnv, what string, id uuid.UUID, want queue.JobState) {
	t.Helper()
	if got := e.state(t, id); got != want {
		t.Fatalf("%s %s is %s; want %s", what, id, got, want)
	}
}

// A dependency completed by SQL (tasq_dispatch, then a plain UPDATE)
// releases its dependant in the same transaction; the dependant waits for
// all of its dependencies, and GetJob shows them.
func TestDepsReleasedBySQL(t *testing.T) {
	t.Parallel()
	for _, schema := range []string{"", "app_deps"} {
		t.Run("schema="+schema, func(t *testing.T) {
			t.Parallel()
			e := newUniqueEnv(t, schema)
			fn := "tasq_dispatch"
			if schema != "" {
				fn = schema + ".tasq_dispatch"
			}
			var a uuid.UUID
			if err := e.pool.QueryRow(e.ctx, `SELECT `+fn+`('plainTask', '{"n": 1}', 'deps')`).Scan(&a); err != nil {
				t.Fatal(err)
			}
			b := e.id(t, &plainTask{N: 2}, queue.OnQueue("deps"))
			c := e.id(t, &plainTask{N: 3}, queue.OnQueue("deps"), queue.After(a, b))
			wantState(t, e, "dependant", c, queue.StatePending)
			info, err := e.a.GetJob(e.ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.DependsOn) != 2 || info.DependsOn[0] != a || info.DependsOn[1] != b || len(info.Waiting) != 2 || info.DepPolicy != queue.DepCancel {
				t.Fatalf("GetJob: DependsOn %v Waiting %v policy %v; want [%s %s] both waiting, cancel", info.DependsOn, info.Waiting, info.DepPolicy, a, b)
			}
			var parent bool
			if err := e.pool.QueryRow(e.ctx, `SELECT has_dependants FROM `+e.table()+` WHERE id = $1`, a).Scan(&parent); err != nil || !parent {
				t.Fatalf("has_dependants of the dependency = %v, %v; want true", parent, err)
			}

			e.sqlFinish(t, a, queue.StateCompleted)
			wantState(t, e, "dependant after one of two", c, queue.StatePending)
			info, _ = e.a.GetJob(e.ctx, c)
			if len(info.Waiting) != 1 || info.Waiting[0] != b {
				t.Fatalf("Waiting = %v; want [%s]", info.Waiting, b)
			}

			e.sqlFinish(t, b, queue.StateCompleted)
			wantState(t, e, "dependant after both", c, queue.StateAvailable)
			if n := e.count(t, `id = $1 AND deps_waiting IS NULL AND run_at <= now()`, c); n != 1 {
				t.Fatal("released dependant still has deps_waiting, or a run_at in the future")
			}
			stats, err := e.a.Stats(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range stats {
				if s.State == queue.StatePending {
					t.Fatalf("Stats has %+v after the release", s)
				}
			}
		})
	}
}

// The worker path: Claim and Finish release the dependant, and a dependant
// dispatched with a delay still in the future becomes scheduled.
func TestDepsReleasedByFinish(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	a := e.id(t, &plainTask{N: 1}, queue.OnQueue("parents"))
	now := e.id(t, &plainTask{N: 2}, queue.OnQueue("kids"), queue.After(a))
	later := e.id(t, &plainTask{N: 3}, queue.OnQueue("kids"), queue.After(a), queue.Delay(time.Hour))
	stats, err := e.a.Stats(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	pending := int64(0)
	for _, s := range stats {
		if s.State == queue.StatePending {
			pending += s.Count
		}
	}
	if pending != 2 {
		t.Fatalf("Stats counts %d pending jobs (%+v); want 2", pending, stats)
	}
	e.finish(t, "parents", completed)
	wantState(t, e, "dependant", now, queue.StateAvailable)
	wantState(t, e, "delayed dependant", later, queue.StateScheduled)
}

// DepCancel cancels the dependants of a failed job down the chain, each
// with an error naming its dependency; DepRun runs them anyway.
func TestDepsFailurePolicies(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	a := e.id(t, &plainTask{N: 1}, queue.OnQueue("chain"))
	b := e.id(t, &plainTask{N: 2}, queue.After(a))
	c := e.id(t, &plainTask{N: 3}, queue.After(b))
	d := e.id(t, &plainTask{N: 4}, queue.After(c))
	anyway := e.id(t, &plainTask{N: 5}, queue.After(b), queue.AfterPolicy(queue.DepRun))

	e.finish(t, "chain", func(j *queue.Job) queue.Outcome { return queue.Failed(j, errors.New("boom")) })
	wantState(t, e, "b", b, queue.StateCancelled)
	wantState(t, e, "c", c, queue.StateCancelled)
	wantState(t, e, "d", d, queue.StateCancelled)
	wantState(t, e, "run-anyway dependant", anyway, queue.StateAvailable)
	for dep, job := range map[uuid.UUID]uuid.UUID{a: b, b: c, c: d} {
		info, err := e.a.GetJob(e.ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info.LastError(), dep.String()) || info.FinishedAt == nil || info.Waiting != nil {
			t.Fatalf("job %s: last error %q, finished %v, waiting %v; want the dependency %s named, finished, no longer waiting", job, info.LastError(), info.FinishedAt, info.Waiting, dep)
		}
	}

	// An operator's cancel and delete count as failures too.
	x := e.id(t, &plainTask{N: 6}, queue.OnQueue("ops"))
	y := e.id(t, &plainTask{N: 7}, queue.OnQueue("ops"))
	onCancel := e.id(t, &plainTask{N: 8}, queue.After(x), queue.AfterPolicy(queue.DepRun))
	onDelete := e.id(t, &plainTask{N: 9}, queue.After(y))
	if err := e.a.CancelJob(e.ctx, x); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "dependant of a cancelled job (run)", onCancel, queue.StateAvailable)
	if err := e.a.DeleteJob(e.ctx, y); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "dependant of a deleted job (cancel)", onDelete, queue.StateCancelled)

	// A pending job can itself be cancelled; its dependants follow.
	p := e.id(t, &plainTask{N: 10}, queue.OnQueue("ops2"))
	q := e.id(t, &plainTask{N: 11}, queue.After(p))
	r := e.id(t, &plainTask{N: 12}, queue.After(q))
	if err := e.a.CancelJob(e.ctx, q); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "dependant of a cancelled pending job", r, queue.StateCancelled)
	e.finish(t, "ops2", completed) // p completes: nothing waits for it any more
	wantState(t, e, "cancelled pending job", q, queue.StateCancelled)
}

// At dispatch a completed dependency counts as done; a failed or cancelled
// one applies the policy at once.
func TestDepsFinishedAtDispatch(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	ok := e.id(t, &plainTask{N: 1}, queue.OnQueue("done"))
	e.finish(t, "done", completed)
	bad := e.id(t, &plainTask{N: 2}, queue.OnQueue("bad"))
	e.finish(t, "bad", func(j *queue.Job) queue.Outcome { return queue.Failed(j, errors.New("boom")) })

	wantState(t, e, "after a completed job", e.id(t, &plainTask{N: 3}, queue.After(ok)), queue.StateAvailable)
	c := e.id(t, &plainTask{N: 4}, queue.After(ok, bad))
	wantState(t, e, "after a failed job (cancel)", c, queue.StateCancelled)
	if info, _ := e.a.GetJob(e.ctx, c); !strings.Contains(info.LastError(), bad.String()) {
		t.Fatalf("last error %q does not name %s", info.LastError(), bad)
	}
	wantState(t, e, "after a failed job (run)", e.id(t, &plainTask{N: 5}, queue.After(ok, bad), queue.AfterPolicy(queue.DepRun)), queue.StateAvailable)
	wantState(t, e, "after a completed job, delayed", e.id(t, &plainTask{N: 6}, queue.After(ok), queue.Delay(time.Hour)), queue.StateScheduled)
}

// Unknown IDs, a job waiting for itself or for a later job of its batch,
// and a unique job with dependencies are refused, and nothing is stored.
func TestDepsRefused(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	a := e.id(t, &plainTask{N: 1})
	ghost := uuid.Must(uuid.NewV7())
	_, err := e.c.DispatchMany(e.ctx, []any{&plainTask{N: 2}, &plainTask{N: 3}}, queue.After(a, ghost))
	if !errors.Is(err, queue.ErrUnknownDependency) || !strings.Contains(err.Error(), ghost.String()) || strings.Contains(err.Error(), a.String()) {
		t.Fatalf("DispatchMany after an unknown ID: %v; want ErrUnknownDependency naming %s only", err, ghost)
	}
	if n := e.count(t, `true`); n != 1 {
		t.Fatalf("%d jobs stored; want only the first", n)
	}
	if n := e.count(t, `has_dependants`); n != 0 {
		t.Fatalf("the refused dispatch marked %d jobs has_dependants", n)
	}

	self := uuid.Must(uuid.NewV7())
	j := job("q")
	j.ID, j.DependsOn = self, []uuid.UUID{self}
	if err := e.a.Insert(e.ctx, []queue.NewJob{j}); !errors.Is(err, queue.ErrInvalidConfig) || !strings.Contains(err.Error(), "itself") {
		t.Fatalf("a job waiting for itself: %v; want ErrInvalidConfig", err)
	}
	first, second := job("q"), job("q")
	first.DependsOn = []uuid.UUID{second.ID}
	if err := e.a.Insert(e.ctx, []queue.NewJob{first, second}); !errors.Is(err, queue.ErrInvalidConfig) || !strings.Contains(err.Error(), "after it") {
		t.Fatalf("a job waiting for a later job of its batch: %v; want ErrInvalidConfig", err)
	}
	if _, err := e.c.Dispatch(e.ctx, &plainTask{N: 4}, queue.After(a), queue.WithUnique(queue.UniqueOpts{})); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Fatalf("a unique job with dependencies: %v; want ErrInvalidConfig", err)
	}
	if _, err := e.c.Dispatch(e.ctx, &plainTask{N: 4}, queue.After(a, a)); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Fatalf("a dependency named twice: %v; want ErrInvalidConfig", err)
	}
	if n := e.count(t, `true`); n != 1 {
		t.Fatalf("%d jobs stored; want only the first", n)
	}

	// A job may wait for an earlier job of its own batch.
	second.DependsOn, first.DependsOn = []uuid.UUID{first.ID}, nil
	if err := e.a.Insert(e.ctx, []queue.NewJob{first, second}); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "waiting for an earlier job of the batch", second.ID, queue.StatePending)
	e.finish(t, "q", completed)
	wantState(t, e, "released within the batch", second.ID, queue.StateAvailable)
}

// In a caller's transaction: the dependant and the mark on its dependency
// exist only if the transaction commits; a dependency dispatched earlier in
// the same transaction is known.
func TestDepsInTransaction(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	a := e.id(t, &plainTask{N: 1}, queue.OnQueue("tx"))
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	inTx, err := e.c.DispatchTx(e.ctx, tx, &plainTask{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.DispatchTx(e.ctx, tx, &plainTask{N: 3}, queue.After(a, inTx)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `true`); n != 1 {
		t.Fatalf("%d jobs after the rollback; want 1", n)
	}
	if n := e.count(t, `has_dependants`); n != 0 {
		t.Fatalf("the rolled back dispatch left has_dependants on %d jobs", n)
	}

	tx, err = e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.c.DispatchTx(e.ctx, tx, &plainTask{N: 4}, queue.After(a))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "dependant committed", c, queue.StatePending)
	e.finish(t, "tx", completed)
	wantState(t, e, "dependant", c, queue.StateAvailable)
}

// An operator's retry: of a failed dependency, it leaves the jobs already
// cancelled (or released) because of it as they are; of a dependant
// (cancelled, or pending), it runs it now, without its dependencies.
func TestDepsOperatorRetry(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	a := e.id(t, &plainTask{N: 1}, queue.OnQueue("retry"))
	cancelled := e.id(t, &plainTask{N: 2}, queue.After(a))
	ran := e.id(t, &plainTask{N: 3}, queue.After(a), queue.AfterPolicy(queue.DepRun))
	e.finish(t, "retry", func(j *queue.Job) queue.Outcome { return queue.Failed(j, errors.New("boom")) })
	wantState(t, e, "cancel dependant", cancelled, queue.StateCancelled)
	wantState(t, e, "run dependant", ran, queue.StateAvailable)

	if err := e.a.RetryJob(e.ctx, a); err != nil {
		t.Fatal(err)
	}
	e.finish(t, "retry", completed)
	wantState(t, e, "cancel dependant after the retried dependency completed", cancelled, queue.StateCancelled)
	if err := e.a.RetryJob(e.ctx, cancelled); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "retried dependant", cancelled, queue.StateAvailable)

	p := e.id(t, &plainTask{N: 4}, queue.OnQueue("retry2"))
	waiting := e.id(t, &plainTask{N: 5}, queue.After(p))
	if err := e.a.RetryJob(e.ctx, waiting); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "retried pending job", waiting, queue.StateAvailable)
	e.finish(t, "retry2", func(j *queue.Job) queue.Outcome { return queue.Failed(j, errors.New("boom")) })
	wantState(t, e, "retried pending job after its dependency failed", waiting, queue.StateAvailable)
}

// Migration 10 goes down (cancelling the pending jobs) and up again.
func TestDepsMigrationRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testpg.NewEmptyDatabase(t)
	if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	e := newUniqueEnvAt(t, dsn)
	a := e.id(t, &plainTask{N: 1})
	b := e.id(t, &plainTask{N: 2}, queue.After(a))
	e.a.Close()
	// Down to 9, past any later migration.
	if err := migrations.Steps(ctx, dsn, 9-int(migrations.Latest)); err != nil {
		t.Fatalf("down: %v", err)
	}
	if v, _, err := migrations.Version(ctx, dsn); err != nil || v != 9 {
		t.Fatalf("version %d, %v; want 9", v, err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var state, last string
	if err := pool.QueryRow(ctx, `SELECT state::text, errors->-1->>'error' FROM tasq_jobs WHERE id = $1`, b).Scan(&state, &last); err != nil {
		t.Fatal(err)
	}
	if state != "cancelled" || !strings.Contains(last, "migration 10 down") {
		t.Fatalf("pending job after down: %s, %q; want cancelled by the migration", state, last)
	}
	if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatalf("up again: %v", err)
	}
	e = newUniqueEnvAt(t, dsn)
	c := e.id(t, &plainTask{N: 3}, queue.After(a))
	wantState(t, e, "dependant after up again", c, queue.StatePending)
	e.sqlFinish(t, a, queue.StateCompleted)
	wantState(t, e, "dependant after up again", c, queue.StateAvailable)
}

// database/sql transactions take dependencies too.
func TestDepsInSQLTx(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	a := e.id(t, &plainTask{N: 1}, queue.OnQueue("sqltx"))
	db, err := sql.Open("pgx", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.c.DispatchTx(e.ctx, tx, &plainTask{N: 2}, queue.After(a))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.DispatchTx(e.ctx, tx, &plainTask{N: 3}, queue.After(uuid.Must(uuid.NewV7()))); !errors.Is(err, queue.ErrUnknownDependency) {
		t.Fatalf("unknown dependency in a *sql.Tx: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, "dependant", c, queue.StatePending)
	e.finish(t, "sqltx", completed)
	wantState(t, e, "dependant", c, queue.StateAvailable)
}

// Races: dependencies finishing at once in separate transactions each take
// themselves off the dependant, and a dispatch racing with its dependency's
// finish never leaves the new job pending for ever.
func TestDepsRaces(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	const n = 8
	for round := 0; round < 20; round++ {
		q := "race" + strings.Repeat("x", round%3) + uuid.NewString()[:8]
		parents := make([]uuid.UUID, n)
		for i := range parents {
			parents[i] = e.id(t, &plainTask{N: i}, queue.OnQueue(q))
		}
		jobs, err := e.a.Claim(e.ctx, queue.ClaimRequest{Queue: q, WorkerID: "w", Limit: n, Lease: time.Minute})
		if err != nil || len(jobs) != n {
			t.Fatalf("claim: %d, %v", len(jobs), err)
		}
		fanIn := e.id(t, &plainTask{N: 100}, queue.After(parents...))
		var late uuid.UUID
		errs := make(chan error, n+1)
		for _, j := range jobs {
			go func() {
				_, err := e.a.Finish(e.ctx, "w", []queue.Outcome{completed(j)})
				errs <- err
			}()
		}
		go func() { // a dispatch racing with the finishes
			var err error
			late, err = e.c.Dispatch(e.ctx, &plainTask{N: 101}, queue.After(parents[n-1]))
			errs <- err
		}()
		for range n + 1 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		wantState(t, e, "fan-in", fanIn, queue.StateAvailable)
		wantState(t, e, "racing dispatch", late, queue.StateAvailable)
	}
}
