package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/adaptertest"
	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testbouncer"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// bouncePoolSize is the bouncer's default_pool_size: two server
// connections, so that the adapter's connections really share them.
const bouncePoolSize = 2

// bounced is one test's world: a fresh migrated database, reachable
// directly and through its own PgBouncer in transaction pooling mode.
type bounced struct {
	direct, pooled string // DSNs of the same database
	bouncer        *testbouncer.Bouncer
}

func newBounced(t *testing.T) bounced {
	t.Helper()
	direct := testpg.NewDatabase(t)
	b := testbouncer.Start(t, testbouncer.Options{Server: direct, PoolMode: testbouncer.Transaction, PoolSize: bouncePoolSize})
	return bounced{direct: direct, pooled: b.URL(direct), bouncer: b}
}

// bounceParam adds a query parameter to a URL DSN.
func bounceParam(dsn, key, value string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// bounceLog collects what a logger writes, for tests that read the log.
type bounceLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *bounceLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *bounceLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *bounceLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func bounceAdapter(t *testing.T, ctx context.Context, dsn string, opts ...postgres.Option) *postgres.Adapter {
	t.Helper()
	a, err := postgres.New(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

func bounceCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestPgBouncerSetup checks what the adapter settles on, directly and
// through a transaction pooler, detected or said in the URL, and what it
// logs about it.
func TestPgBouncerSetup(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	t.Logf("PgBouncer version: %s", env.bouncer.Version())
	listen := bounceParam(env.pooled, postgres.ParamListenURL, env.direct)
	cases := []struct {
		name string
		dsn  string
		want postgres.Setup
		log  string // a line the log must hold
	}{
		{"direct", env.direct,
			postgres.Setup{Pooler: postgres.PoolerNone, Detected: true, ExecMode: pgx.QueryExecModeCacheStatement, Wakeups: postgres.WakeupsListen},
			`level=DEBUG msg="tasq/postgres: direct connection"`},
		{"pgbouncer detected, poll-only", env.pooled,
			postgres.Setup{Pooler: postgres.PoolerTransaction, Detected: true, ExecMode: pgx.QueryExecModeCacheDescribe,
				Wakeups: postgres.WakeupsPoll, WakePollInterval: postgres.DefaultWakePollInterval},
			`level=WARN msg="tasq/postgres: behind a transaction pooler without a listen URL: poll-only mode`},
		{"pgbouncer with a listen URL", listen,
			postgres.Setup{Pooler: postgres.PoolerTransaction, Detected: true, ExecMode: pgx.QueryExecModeCacheDescribe, Wakeups: postgres.WakeupsListenURL},
			`msg="tasq/postgres: behind a transaction pooler; LISTEN on the listen URL"`},
		{"pgbouncer said, exec mode kept", bounceParam(bounceParam(env.pooled, postgres.ParamPooler, "transaction"), "default_query_exec_mode", "exec"),
			postgres.Setup{Pooler: postgres.PoolerTransaction, ExecMode: pgx.QueryExecModeExec, Wakeups: postgres.WakeupsPoll, WakePollInterval: postgres.DefaultWakePollInterval},
			`exec_mode=exec wakeups=poll`},
		{"wake poll from the URL", bounceParam(env.pooled, postgres.ParamWakePoll, "30ms"),
			postgres.Setup{Pooler: postgres.PoolerTransaction, Detected: true, ExecMode: pgx.QueryExecModeCacheDescribe,
				Wakeups: postgres.WakeupsPoll, WakePollInterval: 30 * time.Millisecond},
			`wake_poll=30ms`},
		// Said, on a direct connection: the probe finds that statement names
		// reach the server as they are, so named statements are not used.
		{"transaction said on a direct connection", bounceParam(env.direct, postgres.ParamPooler, "transaction"),
			postgres.Setup{Pooler: postgres.PoolerTransaction, ExecMode: pgx.QueryExecModeCacheDescribe,
				Wakeups: postgres.WakeupsPoll, WakePollInterval: postgres.DefaultWakePollInterval},
			`exec_mode_was="cache statement"`},
		{"session said", bounceParam(env.direct, postgres.ParamPooler, "session"),
			postgres.Setup{Pooler: postgres.PoolerSession, ExecMode: pgx.QueryExecModeCacheStatement, Wakeups: postgres.WakeupsListen},
			`msg="tasq/postgres: behind a session pooler"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log bounceLog
			a := bounceAdapter(t, ctx, c.dsn, postgres.WithLogger(log.logger()))
			c.want.Schema, c.want.Channel = postgres.DefaultSchema, postgres.NotifyChannel
			if got := a.Setup(); got != c.want {
				t.Errorf("Setup() = %+v; want %+v", got, c.want)
			}
			if !strings.Contains(log.String(), c.log) {
				t.Errorf("the log does not say %q; it holds:\n%s", c.log, log.String())
			}
			if n := strings.Count(log.String(), "tasq/postgres:"); n != 1 {
				t.Errorf("New logged %d lines; want one:\n%s", n, log.String())
			}
			// The adapter works in the mode it chose.
			if err := a.Insert(ctx, []queue.NewJob{{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: "setup", Payload: []byte(`{}`)}}); err != nil {
				t.Fatalf("Insert: %v", err)
			}
		})
	}
}

// TestPgBouncerDefaultExecModeBreaks shows the problem the adapter avoids:
// pgx's default mode (named prepared statements) through PgBouncer in
// transaction mode fails, and NewFromPool refuses such a pool with an error
// that says how to build it, while it takes one in cache_describe mode.
func TestPgBouncerDefaultExecModeBreaks(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	pool, err := pgxpool.New(ctx, env.pooled)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(20 * time.Second)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				mu.Lock()
				done := first != nil
				mu.Unlock()
				if done {
					return
				}
				var n int
				err := pool.QueryRow(ctx, fmt.Sprintf("SELECT $1::int + %d", i%5), g).Scan(&n)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil || !strings.Contains(first.Error(), "prepared statement") {
		t.Fatalf("pgx's default mode through PgBouncer in transaction mode: first error %v; want a prepared statement error (is the bouncer pooling transactions?)", first)
	}
	t.Logf("pgx's default mode through PgBouncer %s: %v", env.bouncer.Version(), first)

	_, err = postgres.NewFromPool(ctx, pool, postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err == nil || !strings.Contains(err.Error(), "transaction pooler") || !strings.Contains(err.Error(), "default_query_exec_mode=cache_describe") {
		t.Fatalf("NewFromPool on a cache_statement pool through PgBouncer = %v; want an error saying to use cache_describe", err)
	}
	for mode, want := range map[string]pgx.QueryExecMode{"cache_describe": pgx.QueryExecModeCacheDescribe, "exec": pgx.QueryExecModeExec} {
		good, err := pgxpool.New(ctx, bounceParam(env.pooled, "default_query_exec_mode", mode))
		if err != nil {
			t.Fatal(err)
		}
		defer good.Close()
		a, err := postgres.NewFromPool(ctx, good, postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatalf("NewFromPool on a %s pool through PgBouncer: %v", mode, err)
		}
		if s := a.Setup(); s.Pooler != postgres.PoolerTransaction || s.ExecMode != want || s.Wakeups != postgres.WakeupsPoll {
			t.Errorf("NewFromPool on a %s pool: Setup() = %+v", mode, s)
		}
	}
	describeExec, err := pgxpool.New(ctx, bounceParam(env.pooled, "default_query_exec_mode", "describe_exec"))
	if err != nil {
		t.Fatal(err)
	}
	defer describeExec.Close()
	if _, err := postgres.NewFromPool(ctx, describeExec); err == nil || !strings.Contains(err.Error(), "another server connection") {
		t.Errorf("NewFromPool on a describe_exec pool through PgBouncer = %v; want it refused", err)
	}
}

// bounceTask records when each job ran, per test (by Sink).
type bounceTask struct {
	Sink string
	N    int
}

// bounceSinks maps bounceTask.Sink to the test's *bounceSink.
var bounceSinks sync.Map

type bounceSink struct {
	count atomic.Int64
	ran   chan time.Time // when each job started, if the test wants it
}

func newBounceSink(t *testing.T, ran chan time.Time) string {
	key := uuid.NewString()
	bounceSinks.Store(key, &bounceSink{ran: ran})
	t.Cleanup(func() { bounceSinks.Delete(key) })
	return key
}

func bounceSinkOf(key string) *bounceSink {
	s, _ := bounceSinks.Load(key)
	return s.(*bounceSink)
}

func (*bounceTask) Kind() string { return "postgres_test.bounceTask" }

func (b *bounceTask) Handle(ctx context.Context) (int, error) {
	s := bounceSinkOf(b.Sink)
	if s.ran != nil {
		select {
		case s.ran <- time.Now():
		default:
		}
	}
	s.count.Add(1)
	return b.N, nil
}

// startBounceWorker runs a worker for bounceTask on a until the test ends.
func startBounceWorker(t *testing.T, a *postgres.Adapter, cfg worker.Config) *worker.Worker {
	t.Helper()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &bounceTask{})
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w, err := worker.New(a, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return w
}

// bounceWaitFor polls cond every 10ms until it holds, failing the test after d.
func bounceWaitFor(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPgBouncerWorkerUnderLoad dispatches many jobs from many goroutines
// through PgBouncer in transaction mode while a worker, through the same
// bouncer, runs them: nothing may fail (no prepared statement errors), every
// job completes, and the server never sees more connections to the
// database than the bouncer's pool has.
func TestPgBouncerWorkerUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	var log bounceLog
	a := bounceAdapter(t, ctx, env.pooled, postgres.WithLogger(log.logger()))
	client, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	// Watch, directly, how many server connections the database has.
	watch, err := pgxpool.New(ctx, bounceParam(env.direct, "application_name", "tasq_watch"))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	var maxServers atomic.Int64
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			var n int64
			err := watch.QueryRow(watchCtx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> 'tasq_watch'`).Scan(&n)
			if err == nil && n > maxServers.Load() {
				maxServers.Store(n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	var wlog bounceLog
	sink := newBounceSink(t, nil)
	w := startBounceWorker(t, a, worker.Config{Concurrency: 16, PollInterval: 200 * time.Millisecond, Logger: wlog.logger()})

	const goroutines, each, batch = 16, 25, 4 // each goroutine: 25 single dispatches and 25 batches of 4
	const total = goroutines * each * (1 + batch)
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if _, err := client.Dispatch(ctx, &bounceTask{Sink: sink, N: g*1000 + i}); err != nil {
					errs <- fmt.Errorf("Dispatch: %w", err)
					return
				}
				tasks := make([]any, batch)
				for k := range tasks {
					tasks[k] = &bounceTask{Sink: sink, N: k}
				}
				if _, err := client.DispatchMany(ctx, tasks); err != nil {
					errs <- fmt.Errorf("DispatchMany: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	dispatched := time.Since(began)
	// Stats count a job when it ends; its outcome is written in a batch
	// right after, so wait for the rows.
	var completed int
	bounceWaitFor(t, time.Minute, fmt.Sprintf("%d jobs completed", total), func() (bool, error) {
		err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE state = 'completed'`).Scan(&completed)
		return completed >= total, err
	})
	ran := time.Since(began)
	stopWatch()
	<-watched

	if completed != total || bounceSinkOf(sink).count.Load() != total || w.Stats().Completed != total {
		t.Errorf("%d jobs completed in the table, %d handled, %d counted by the worker; want %d", completed, bounceSinkOf(sink).count.Load(), w.Stats().Completed, total)
	}
	if st := w.Stats(); st.Failed != 0 || st.Retried != 0 || st.Stale != 0 {
		t.Errorf("worker stats %+v; want no failures, retries or stale outcomes", st)
	}
	for _, l := range []*bounceLog{&log, &wlog} {
		if s := l.String(); strings.Contains(s, "prepared statement") || strings.Contains(s, "level=ERROR") {
			t.Errorf("errors in the log:\n%s", s)
		}
	}
	if m := maxServers.Load(); m < 1 || m > bouncePoolSize {
		t.Errorf("the server saw up to %d connections to the database; want 1 to %d (the bouncer's pool)", m, bouncePoolSize)
	}
	t.Logf("%d jobs through PgBouncer (%d server connections at most): dispatched in %s, all completed after %s",
		total, maxServers.Load(), dispatched.Round(time.Millisecond), ran.Round(time.Millisecond))
}

// bouncePickUp runs a worker that polls only every hour on a, runs one
// job to make sure it is idle, and returns how long the next job took from
// dispatch to its handler.
func bouncePickUp(t *testing.T, ctx context.Context, a *postgres.Adapter, ready func() (bool, error)) time.Duration {
	t.Helper()
	client, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan time.Time, 1)
	sink := newBounceSink(t, ran)
	startBounceWorker(t, a, worker.Config{Concurrency: 2, PollInterval: time.Hour})
	bounceWaitFor(t, 30*time.Second, "the worker to be woken up by the backend", ready)
	wait := func() time.Time {
		select {
		case at := <-ran:
			return at
		case <-time.After(30 * time.Second):
			t.Fatal("the job did not run within 30s")
		}
		return time.Time{}
	}
	// The first job may be found by the worker's first look for work;
	// after it, the worker is idle and only a wake-up finds the next.
	if _, err := client.Dispatch(ctx, &bounceTask{Sink: sink}); err != nil {
		t.Fatal(err)
	}
	wait()
	bounceWaitFor(t, 10*time.Second, "the first job's outcome", func() (bool, error) {
		var n int
		err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE state = 'completed'`).Scan(&n)
		return n == 1, err
	})
	began := time.Now()
	if _, err := client.Dispatch(ctx, &bounceTask{Sink: sink, N: 2}); err != nil {
		t.Fatal(err)
	}
	return wait().Sub(began)
}

// listening reports whether a session LISTENs on the database (seen
// directly on the server).
func bounceListening(ctx context.Context, direct *pgxpool.Pool) (bool, error) {
	var n int
	err := direct.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN "`+postgres.NotifyChannel+`"' AND pid <> pg_backend_pid()`).Scan(&n)
	return n > 0, err
}

// TestPgBouncerListenURLWakesWorker: through PgBouncer in transaction mode,
// with a listen URL to the server itself, NOTIFY wakes an idle worker that
// would otherwise look for work only every hour.
func TestPgBouncerListenURLWakesWorker(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	a := bounceAdapter(t, ctx, bounceParam(env.pooled, postgres.ParamListenURL, env.direct),
		postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if s := a.Setup(); s.Pooler != postgres.PoolerTransaction || s.Wakeups != postgres.WakeupsListenURL {
		t.Fatalf("Setup() = %+v; want a transaction pooler and LISTEN on the listen URL", s)
	}
	direct, err := pgxpool.New(ctx, env.direct)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	d := bouncePickUp(t, ctx, a, func() (bool, error) { return bounceListening(ctx, direct) })
	t.Logf("pick-up through PgBouncer with LISTEN on the listen URL: %s (PollInterval 1h)", d.Round(time.Microsecond))
	if d > time.Second {
		t.Errorf("pick-up took %s; want well under 1s (a NOTIFY wake-up)", d)
	}
}

// TestPgBouncerPollOnlyWakesWorker: through PgBouncer in transaction mode
// without a listen URL, nothing LISTENs, the log says poll-only, and the
// adapter's short poll still wakes a worker that would otherwise look for
// work only every hour.
func TestPgBouncerPollOnlyWakesWorker(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	var log bounceLog
	a := bounceAdapter(t, ctx, env.pooled, postgres.WithLogger(log.logger()))
	if s := a.Setup(); s.Wakeups != postgres.WakeupsPoll || s.WakePollInterval != postgres.DefaultWakePollInterval {
		t.Fatalf("Setup() = %+v; want poll-only mode", s)
	}
	if !strings.Contains(log.String(), "poll-only mode") {
		t.Errorf("the log does not say poll-only mode:\n%s", log.String())
	}
	direct, err := pgxpool.New(ctx, env.direct)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	d := bouncePickUp(t, ctx, a, func() (bool, error) { return true, nil })
	t.Logf("pick-up through PgBouncer in poll-only mode: %s (wake poll %s, PollInterval 1h)", d.Round(time.Microsecond), postgres.DefaultWakePollInterval)
	if d > time.Second {
		t.Errorf("pick-up took %s; want about the wake poll interval, %s", d, postgres.DefaultWakePollInterval)
	}
	if l, err := bounceListening(ctx, direct); err != nil || l {
		t.Errorf("a session LISTENs in poll-only mode (%v, %v); nothing should", l, err)
	}
}

// TestPgBouncerPollOnlySubscribe checks what poll-only mode's Subscribe
// delivers: a queue that gains a job, and again when its next job changes.
func TestPgBouncerPollOnlySubscribe(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	a := bounceAdapter(t, ctx, env.pooled, postgres.WithWakePollInterval(20*time.Millisecond),
		postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	sctx, cancel := context.WithCancel(ctx)
	ch, err := a.Subscribe(sctx)
	if err != nil {
		t.Fatal(err)
	}
	expect := func(q string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case got, ok := <-ch:
				if !ok {
					t.Fatalf("the channel closed while waiting for %q", q)
				}
				if got == q {
					return
				}
			case <-deadline:
				t.Fatalf("no wake-up for queue %q within 10s", q)
			}
		}
	}
	job := func(q string) queue.NewJob {
		return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: q, Payload: []byte(`{}`)}
	}
	if err := a.Insert(ctx, []queue.NewJob{job("a"), job("a")}); err != nil {
		t.Fatal(err)
	}
	expect("a")
	if err := a.Insert(ctx, []queue.NewJob{job("b")}); err != nil {
		t.Fatal(err)
	}
	expect("b")
	// Claiming a's next job leaves the other one next: a is delivered again.
	if jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: "a", WorkerID: "w", Limit: 1, Lease: time.Minute}); err != nil || len(jobs) != 1 {
		t.Fatalf("Claim: %d jobs, %v", len(jobs), err)
	}
	expect("a")
	cancel()
	for range ch { // the channel closes when ctx is done
	}
}

// TestPgBouncerDispatchTx: DispatchTx inside transactions through PgBouncer
// commits and rolls back with them, also with many at once on two server
// connections.
func TestPgBouncerDispatchTx(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	a := bounceAdapter(t, ctx, env.pooled, postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	client, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	sink := newBounceSink(t, nil)
	count := func(q pgx.Tx, id uuid.UUID) int {
		t.Helper()
		var n int
		var err error
		if q != nil {
			err = q.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE id = $1`, id).Scan(&n)
		} else {
			err = a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE id = $1`, id).Scan(&n)
		}
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	tx, err := a.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rolled, err := client.DispatchTx(ctx, tx, &bounceTask{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if count(tx, rolled) != 1 || count(nil, rolled) != 0 {
		t.Error("the job in an open transaction is not seen inside it only")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if count(nil, rolled) != 0 {
		t.Error("a job dispatched in a rolled-back transaction exists")
	}

	tx, err = a.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := client.DispatchTx(ctx, tx, &bounceTask{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if count(nil, committed) != 1 {
		t.Error("a job dispatched in a committed transaction is missing")
	}

	// Many transactions at once, more than the bouncer has server
	// connections: each keeps its server connection to its end.
	const n = 24
	var wg sync.WaitGroup
	ids := make([]uuid.UUID, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = func() error {
				tx, err := a.Pool().Begin(ctx)
				if err != nil {
					return err
				}
				defer tx.Rollback(ctx)
				var before, after int32
				if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&before); err != nil {
					return err
				}
				if ids[i], err = client.DispatchTx(ctx, tx, &bounceTask{Sink: sink, N: i}); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&after); err != nil {
					return err
				}
				if before != after {
					return fmt.Errorf("the transaction moved from server process %d to %d", before, after)
				}
				if i%2 == 0 {
					return tx.Commit(ctx)
				}
				return tx.Rollback(ctx)
			}()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if want := 1 - i%2; count(nil, id) != want {
			t.Errorf("transaction %d (committed: %v): %d rows of its job, want %d", i, i%2 == 0, count(nil, id), want)
		}
	}
}

// TestPgBouncerConformance runs the conformance suite through PgBouncer
// in transaction mode, in poll-only mode: every statement the adapter has.
func TestPgBouncerConformance(t *testing.T) {
	t.Parallel()
	b := testbouncer.Start(t, testbouncer.Options{Server: testpg.AdminDSN(), PoolMode: testbouncer.Transaction, PoolSize: bouncePoolSize})
	adaptertest.Run(t, adaptertest.Harness{
		New: func(t *testing.T) queue.Adapter {
			a, err := postgres.New(context.Background(), b.URL(testpg.NewDatabase(t)),
				postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Close)
			if s := a.Setup(); s.Pooler != postgres.PoolerTransaction {
				t.Fatalf("Setup() = %+v; want a transaction pooler", s)
			}
			return a
		},
		Tx: func(t *testing.T, a queue.Adapter) (any, func() error, func() error) {
			ctx := context.Background()
			tx, err := a.(*postgres.Adapter).Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
		},
	})
}

// TestPgBouncerConfigErrors checks that the adapter's URL parameters and
// listen URL are checked, and refused with errors that say why.
func TestPgBouncerConfigErrors(t *testing.T) {
	t.Parallel()
	ctx := bounceCtx(t)
	env := newBounced(t)
	other := testpg.NewDatabase(t)
	quiet := postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	cases := []struct {
		name, dsn, want string
	}{
		{"unknown parameter", bounceParam(env.direct, "tasq_pooller", "none"), "unknown URL parameter tasq_pooller"},
		{"unknown pooler", bounceParam(env.direct, postgres.ParamPooler, "pgpool"), `pooler "pgpool" is unknown`},
		{"bad wake poll", bounceParam(env.pooled, postgres.ParamWakePoll, "often"), "is not a duration"},
		{"listen URL at the pooler", bounceParam(env.pooled, postgres.ParamListenURL, env.pooled), "where LISTEN hears nothing"},
		{"listen URL on another database", bounceParam(env.pooled, postgres.ParamListenURL, other), "not this adapter's database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := postgres.New(ctx, c.dsn, quiet)
			if err == nil {
				a.Close()
				t.Fatalf("New succeeded; want an error saying %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v; want it to say %q", err, c.want)
			}
		})
	}
	// The adapter's parameters never reach the server, which would refuse
	// them as unknown settings.
	a := bounceAdapter(t, ctx, bounceParam(bounceParam(env.direct, postgres.ParamPooler, "none"), postgres.ParamWakePoll, "1s"), quiet)
	if s := a.Setup(); s.Pooler != postgres.PoolerNone || s.Detected || s.Wakeups != postgres.WakeupsListen {
		t.Errorf("tasq_pooler=none: Setup() = %+v", s)
	}
	// Options override the URL.
	a = bounceAdapter(t, ctx, bounceParam(env.pooled, postgres.ParamWakePoll, "1s"), quiet, postgres.WithWakePollInterval(40*time.Millisecond))
	if s := a.Setup(); s.WakePollInterval != 40*time.Millisecond {
		t.Errorf("WithWakePollInterval after tasq_wake_poll=1s: Setup() = %+v", s)
	}
}
