package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// txEnv is an adapter with one claimed job and an effects table.
type txEnv struct {
	a    *postgres.Adapter
	pool *pgxpool.Pool
	job  *queue.Job
}

func newTxEnv(t *testing.T) txEnv {
	t.Helper()
	ctx := context.Background()
	a, _ := newAdapter(t)
	if _, err := a.Pool().Exec(ctx, `CREATE TABLE effects (job_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := a.Insert(ctx, []queue.NewJob{job("pay")}); err != nil {
		t.Fatal(err)
	}
	jobs := claimN(t, a, "pay", 1)
	if len(jobs) != 1 {
		t.Fatalf("claimed %d jobs, want 1", len(jobs))
	}
	return txEnv{a: a, pool: a.Pool(), job: jobs[0]}
}

// effectAndComplete writes the job's effect and its completion in one
// transaction and leaves it open.
func (e txEnv) effectAndComplete(t *testing.T, ctx context.Context, workerID string, lease queue.Lease) (pgx.Tx, error) {
	t.Helper()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1)`, lease.ID); err != nil {
		t.Fatal(err)
	}
	return tx, e.a.CompleteTx(ctx, tx, workerID, lease, []byte(`{"ok":true}`))
}

func (e txEnv) state(t *testing.T) (state string, effects int) {
	t.Helper()
	err := e.pool.QueryRow(context.Background(), `SELECT state::text, (SELECT count(*) FROM effects) FROM tasq_jobs WHERE id = $1`, e.job.ID).Scan(&state, &effects)
	if err != nil {
		t.Fatal(err)
	}
	return state, effects
}

// Committed: the effect and the completion (with its result) stand, and
// Settled says so. Rolled back: neither, and the job still runs under its
// claim.
func TestCompleteTxCommitsWithTheEffectOrNotAtAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, commit := range []bool{true, false} {
		e := newTxEnv(t)
		tx, err := e.effectAndComplete(t, ctx, "w", e.job.Lease())
		if err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		state, effects := e.state(t)
		settled, completed, err := e.a.Settled(ctx, "w", e.job.Lease())
		if err != nil {
			t.Fatal(err)
		}
		if commit && (state != "completed" || effects != 1 || !settled || !completed) {
			t.Errorf("committed: state %s, effects %d, settled %v, completed %v; want completed, 1, true, true", state, effects, settled, completed)
		}
		if !commit && (state != "running" || effects != 0 || settled || completed) {
			t.Errorf("rolled back: state %s, effects %d, settled %v, completed %v; want running, 0, false, false", state, effects, settled, completed)
		}
		if commit {
			var result string
			if err := e.pool.QueryRow(ctx, `SELECT result::text FROM tasq_jobs WHERE id = $1`, e.job.ID).Scan(&result); err != nil || result != `{"ok": true}` {
				t.Errorf("result = %q (%v), want the one CompleteTx stored", result, err)
			}
		}
	}
}

// A stale execution cannot complete: its lease expired and the job was
// rescued and claimed again, or it is another worker's claim. CompleteTx
// says ErrClaimLost, and its transaction's effect is rolled back by the
// caller.
func TestCompleteTxRefusesAStaleExecution(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTxEnv(t)
	if _, err := e.pool.Exec(ctx, `UPDATE tasq_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, e.job.ID); err != nil {
		t.Fatal(err)
	}
	if _, rescued, err := e.a.Maintain(ctx); err != nil || rescued != 1 {
		t.Fatalf("Maintain rescued %d (%v), want 1", rescued, err)
	}
	again := claimN(t, e.a, "pay", 1)
	if len(again) != 1 || again[0].Token <= e.job.Token {
		t.Fatalf("reclaim: %+v", again)
	}
	for name, try := range map[string]struct {
		worker string
		lease  queue.Lease
	}{
		"old claim":     {"w", e.job.Lease()},
		"other worker":  {"w2", again[0].Lease()},
		"unknown token": {"w", queue.Lease{ID: e.job.ID, Token: again[0].Token + 1}},
	} {
		_, err := e.effectAndComplete(t, ctx, try.worker, try.lease)
		if !errors.Is(err, queue.ErrClaimLost) {
			t.Errorf("%s: err = %v, want ErrClaimLost", name, err)
		}
	}
	// The current claim still can.
	tx, err := e.effectAndComplete(t, ctx, "w", again[0].Lease())
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if state, _ := e.state(t); state != "completed" {
		t.Errorf("state %s after the current claim's commit", state)
	}
}

// A job whose lease ran out can still be completed by its claim as long as
// no rescue took it; a rescue that meets the job locked by an open
// CompleteTx skips it, and after the commit finds it completed: no second
// execution ever starts.
func TestCompleteTxHoldsOffARescue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTxEnv(t)
	if _, err := e.pool.Exec(ctx, `UPDATE tasq_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, e.job.ID); err != nil {
		t.Fatal(err)
	}
	tx, err := e.effectAndComplete(t, ctx, "w", e.job.Lease())
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, rescued, err := e.a.Maintain(mctx); err != nil || rescued != 0 {
		t.Fatalf("Maintain during the open transaction: rescued %d (%v), want 0 without waiting", rescued, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, rescued, err := e.a.Maintain(ctx); err != nil || rescued != 0 {
		t.Fatalf("Maintain after the commit: rescued %d (%v), want 0", rescued, err)
	}
	if state, effects := e.state(t); state != "completed" || effects != 1 {
		t.Errorf("state %s, effects %d; want completed, 1", state, effects)
	}
}

// The lease renewal of a worker skips a row that an open CompleteTx holds,
// instead of waiting for it with every other lease of the worker: the
// other job's lease is renewed at once, and the locked one is not lost.
func TestExtendLeasesDoesNotWaitForAnOpenCompleteTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTxEnv(t)
	if err := e.a.Insert(ctx, []queue.NewJob{job("pay")}); err != nil {
		t.Fatal(err)
	}
	other := claimN(t, e.a, "pay", 1)
	if len(other) != 1 {
		t.Fatal("no second job")
	}
	tx, err := e.effectAndComplete(t, ctx, "w", e.job.Lease())
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lost, err := e.a.ExtendLeases(rctx, "w", []queue.Lease{e.job.Lease(), other[0].Lease()}, time.Hour)
	if err != nil {
		t.Fatalf("ExtendLeases with a row locked by an open CompleteTx: %v (it waited for the lock)", err)
	}
	if len(lost) != 0 {
		t.Errorf("lost = %v, want none: both jobs are still held", lost)
	}
	var renewed bool
	if err := e.pool.QueryRow(ctx, `SELECT lease_expires_at > now() + interval '30 minutes' FROM tasq_jobs WHERE id = $1`, other[0].ID).Scan(&renewed); err != nil || !renewed {
		t.Errorf("the other job's lease was not renewed (%v)", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	lost, err = e.a.ExtendLeases(ctx, "w", []queue.Lease{e.job.Lease()}, time.Hour)
	if err != nil || len(lost) != 1 {
		t.Errorf("after the commit: lost %v (%v), want the completed job", lost, err)
	}
}

// What is not a transaction on the adapter's database is refused with
// ErrTxUnsupported and completes nothing: a pool, a nil *sql.Tx, a
// transaction on another database.
func TestCompleteTxRefusesWhatIsNotItsTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTxEnv(t)
	otherDSN := testpg.NewDatabase(t)
	db, err := sql.Open("pgx", otherDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	otherTx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer otherTx.Rollback()
	var nilTx *sql.Tx
	for name, tx := range map[string]any{"pool": e.pool, "nil *sql.Tx": nilTx, "other database": otherTx, "nil": nil} {
		err := e.a.CompleteTx(ctx, tx, "w", e.job.Lease(), nil)
		if !errors.Is(err, queue.ErrTxUnsupported) {
			t.Errorf("%s: err = %v, want ErrTxUnsupported", name, err)
		}
	}
	if state, _ := e.state(t); state != "running" {
		t.Errorf("state %s, want running", state)
	}
	// database/sql's transaction on the right database works.
	db2, err := sql.Open("pgx", e.a.Pool().Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	stx, err := db2.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.a.CompleteTx(ctx, stx, "w", e.job.Lease(), nil); err != nil {
		t.Fatalf("*sql.Tx: %v", err)
	}
	if err := stx.Commit(); err != nil {
		t.Fatal(err)
	}
	if state, _ := e.state(t); state != "completed" {
		t.Errorf("state %s after a *sql.Tx commit, want completed", state)
	}
}
