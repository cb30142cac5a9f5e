package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

func newAdapter(t *testing.T) (*postgres.Adapter, string) {
	t.Helper()
	dsn := testpg.NewDatabase(t)
	a, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, dsn
}

func job(q string) queue.NewJob {
	return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: q, Payload: []byte(`{}`), MaxRetries: 3, RetryDelay: time.Second}
}

// Defect 10: rows stored before the schema's CHECKs (or by hand) with a
// dispatch time at infinity, or an attempt at the integer maximum, must not
// stop the claim of their batch or their queue: they come back Invalid, the
// good rows come back as usual.
func TestUnreadableRowsDoNotStopTheClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	// Rows like these predate migration 2's CHECKs (now migration 12's
	// tasq_jobs_valid, which is NOT VALID, so they stay); drop the CHECK to
	// store them as an old table would hold them.
	if _, err := a.Pool().Exec(ctx, `ALTER TABLE tasq_jobs DROP CONSTRAINT tasq_jobs_valid`); err != nil {
		t.Fatal(err)
	}
	var good []queue.NewJob
	for range 19 {
		good = append(good, job("bad-rows"))
	}
	if err := a.Insert(ctx, good); err != nil {
		t.Fatal(err)
	}
	inf, maxed := uuid.New(), uuid.New()
	if _, err := a.Pool().Exec(ctx, `INSERT INTO tasq_jobs (id, kind, queue, dispatched_at, attempt, max_retries) VALUES
		($1, 'k', 'bad-rows', 'infinity', 0, 3), ($2, 'k', 'bad-rows', now(), 2147483647, 3)`, inf, maxed); err != nil {
		t.Fatal(err)
	}
	jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: "bad-rows", WorkerID: "w", Limit: 100, Lease: time.Minute})
	if err != nil {
		t.Fatalf("one bad row failed the claim of its whole queue: %v", err)
	}
	if len(jobs) != 21 {
		t.Fatalf("claimed %d of 21", len(jobs))
	}
	for _, j := range jobs {
		switch j.ID {
		case inf:
			if j.Invalid == nil || !strings.Contains(j.Invalid.Error(), "infinity") {
				t.Errorf("row with dispatched_at infinity: Invalid = %v", j.Invalid)
			}
		case maxed:
			// Its attempt is capped, so the claim works; the worker fails it
			// as exhausted (attempt far beyond max_retries).
			if !queue.Exhausted(j) {
				t.Errorf("row with attempt at the maximum claimed as %+v, want exhausted", j)
			}
		default:
			if j.Invalid != nil {
				t.Errorf("good row marked invalid: %v", j.Invalid)
			}
		}
	}
	// The listing reads the same rows without failing.
	list, err := a.ListJobs(ctx, queue.ListFilter{Queue: "bad-rows", Limit: 100})
	if err != nil || len(list) != 21 {
		t.Fatalf("ListJobs over the bad rows: %d rows, %v", len(list), err)
	}
}

// The schema refuses the values no job can have, for new rows.
func TestSchemaRefusesImpossibleValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	for name, q := range map[string]string{
		"infinite dispatch":  `INSERT INTO tasq_jobs (id, kind, dispatched_at) VALUES (gen_random_uuid(), 'k', 'infinity')`,
		"infinite run_at":    `INSERT INTO tasq_jobs (id, kind, run_at) VALUES (gen_random_uuid(), 'k', '-infinity')`,
		"attempt at maximum": `INSERT INTO tasq_jobs (id, kind, attempt) VALUES (gen_random_uuid(), 'k', 2147483647)`,
		"negative token":     `INSERT INTO tasq_jobs (id, kind, claim_token) VALUES (gen_random_uuid(), 'k', -1)`,
	} {
		if _, err := a.Pool().Exec(ctx, q); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
}

// Defect 11: DispatchTx with something that is not a transaction, or a
// transaction on another database, stores nothing and says why.
func TestInsertTxRefusesWhatIsNotItsTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, dsn := newAdapter(t)
	other, otherDSN := newAdapter(t)
	_ = other

	conn, err := a.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	rawConn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer rawConn.Close(ctx)
	gdb, err := gorm.Open(gormpg.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	otherTx, err := pgx.Connect(ctx, otherDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer otherTx.Close(ctx)
	tx, err := otherTx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck

	for name, handle := range map[string]any{
		"*pgxpool.Pool":            a.Pool(),
		"*pgxpool.Conn":            conn,
		"*pgx.Conn":                rawConn,
		"*gorm.DB outside a tx":    gdb,
		"*sql.DB":                  sqlDB,
		"tx on another database":   tx,
		"a string":                 "BEGIN",
		"nil *sql.Tx":              (*sql.Tx)(nil),
		"nil *gorm.DB":             (*gorm.DB)(nil),
		"gorm.DB on another db tx": nil, // filled below
	} {
		if handle == nil {
			continue
		}
		j := job("txrefuse")
		err := a.InsertTx(ctx, handle, []queue.NewJob{j})
		if !errors.Is(err, queue.ErrTxUnsupported) {
			t.Errorf("%s: InsertTx = %v, want ErrTxUnsupported", name, err)
		}
		if _, err := a.GetJob(ctx, j.ID); !errors.Is(err, queue.ErrJobNotFound) {
			t.Errorf("%s: the job was stored (%v)", name, err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := other.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the other database holds %d jobs (%v), want none", n, err)
	}
	// A *gorm.DB inside a transaction is accepted.
	j := job("txrefuse")
	if err := gdb.Transaction(func(gtx *gorm.DB) error { return a.InsertTx(ctx, gtx, []queue.NewJob{j}) }); err != nil {
		t.Fatalf("*gorm.DB inside Transaction: %v", err)
	}
	if _, err := a.GetJob(ctx, j.ID); err != nil {
		t.Errorf("committed gorm transaction's job: %v", err)
	}
}

// Defect 13: the error history is capped, keeping the first entry, the
// newest ones and a count of the dropped ones.
func TestErrorHistoryIsCapped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	j := job("history")
	j.MaxRetries = 1000
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	const attempts = 50
	for i := 1; i <= attempts; i++ {
		jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: "history", WorkerID: "w", Limit: 1, Lease: time.Minute})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("claim %d: %v %d", i, err, len(jobs))
		}
		o := queue.Outcome{ID: j.ID, Token: jobs[0].Token, State: queue.StateAvailable, Error: fmt.Sprintf("failure %d %s", i, strings.Repeat("x", 4000))}
		if n, err := a.Finish(ctx, "w", []queue.Outcome{o}); err != nil || n != 1 {
			t.Fatalf("finish %d: %d %v", i, n, err)
		}
	}
	info, err := a.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Errors) != queue.MaxErrorHistory || info.ErrorsOmitted != attempts-queue.MaxErrorHistory {
		t.Fatalf("history of %d entries, %d omitted; want %d and %d", len(info.Errors), info.ErrorsOmitted, queue.MaxErrorHistory, attempts-queue.MaxErrorHistory)
	}
	if !strings.HasPrefix(info.Errors[0].Error, "failure 1 ") || !strings.HasPrefix(info.LastError(), fmt.Sprintf("failure %d ", attempts)) ||
		!strings.HasPrefix(info.Errors[1].Error, fmt.Sprintf("failure %d ", attempts-queue.MaxErrorHistory+2)) {
		t.Errorf("kept entries: first %.12q, second %.12q, last %.12q", info.Errors[0].Error, info.Errors[1].Error, info.LastError())
	}
	if info.Token != attempts {
		t.Errorf("claim token %d after %d claims", info.Token, attempts)
	}
}

// A database or role that does not exist is reported as such, not as a
// server that is down.
func TestConnectErrorsSayWhatIsWrong(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testpg.NewDatabase(t)
	u, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	noDB := fmt.Sprintf("postgres://%s:%s@%s:%d/no_such_db?sslmode=disable", u.User, u.Password, u.Host, u.Port)
	if _, err := postgres.New(ctx, noDB); err == nil || !strings.Contains(err.Error(), `no database "no_such_db"`) {
		t.Errorf("missing database: %v", err)
	}
	noRole := fmt.Sprintf("postgres://nobody_here:x@%s:%d/%s?sslmode=disable", u.Host, u.Port, u.Database)
	if _, err := postgres.New(ctx, noRole); err == nil || !strings.Contains(err.Error(), `refused user "nobody_here"`) {
		t.Errorf("missing role: %v", err)
	}
}

// Defect 7: jobs that no running worker can take are visible, by queue and
// kind, with the oldest; a worker that knows the kind makes them disappear
// from the list, and so does its lapse bring them back.
func TestUnservedKindsAreVisible(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	old, newer := job("deploy"), job("deploy")
	old.Kind, newer.Kind = "OldKind", "NewKind"
	if err := a.Insert(ctx, []queue.NewJob{old, newer}); err != nil {
		t.Fatal(err)
	}
	if err := a.RegisterWorker(ctx, queue.WorkerInfo{ID: "old-release", Queues: []string{"deploy"}, Kinds: []string{"OldKind"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	un, err := a.Unserved(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(un) != 1 || un[0].Kind != "NewKind" || un[0].Queue != "deploy" || un[0].Count != 1 || un[0].Oldest.IsZero() {
		t.Fatalf("Unserved = %+v, want only NewKind on deploy", un)
	}
	if err := a.RegisterWorker(ctx, queue.WorkerInfo{ID: "new-release", Queues: []string{"deploy"}, Kinds: []string{"OldKind", "NewKind"}}, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if un, err := a.Unserved(ctx); err != nil || len(un) != 0 {
		t.Fatalf("with the new release up: Unserved = %+v, %v; want none", un, err)
	}
	ws, err := a.Workers(ctx)
	if err != nil || len(ws) != 2 {
		t.Fatalf("Workers = %+v, %v", ws, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		un, err := a.Unserved(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(un) == 1 && un[0].Kind == "NewKind" {
			break // the new release's entry lapsed
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the new release's entry lapsed: Unserved = %+v", un)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.UnregisterWorker(ctx, "old-release"); err != nil {
		t.Fatal(err)
	}
	if un, _ := a.Unserved(ctx); len(un) != 2 {
		t.Errorf("with no worker: Unserved = %+v, want both kinds", un)
	}
}

// A sub-millisecond timeout is stored as 1 ms, not as 0 (which means none).
func TestSubMillisecondDurationsRoundUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	j := job("tiny")
	j.Timeout, j.RetryDelay = 500*time.Microsecond, 1500*time.Microsecond
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	info, err := a.GetJob(ctx, j.ID)
	if err != nil || info.Timeout != time.Millisecond || info.RetryDelay != 2*time.Millisecond {
		t.Fatalf("stored timeout %v retry delay %v (%v), want 1ms and 2ms", info.Timeout, info.RetryDelay, err)
	}
}
