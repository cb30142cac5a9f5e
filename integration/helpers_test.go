package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testmain"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	if os.Getenv(relayChildEnv) != "" {
		os.Exit(relayChildMain())
	}
	os.Exit(testmain.Chain(m, testpg.Main, testredis.Main, testmysql.Main, testsqs.Main))
}

// env is one test's world: a fresh migrated database, an adapter and a client.
type env struct {
	t       *testing.T
	ctx     context.Context
	dsn     string
	adapter *postgres.Adapter
	client  *queue.Client
	pool    *pgxpool.Pool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dsn := testpg.NewDatabase(t)
	a, err := postgres.New(ctx, dsn)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(a.Close)
	c, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, dsn: dsn, adapter: a, client: c, pool: a.Pool()}
}

// quietLogger keeps expected errors (failing tasks) out of test output unless -v.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runningWorker is a worker running in the background of a test.
type runningWorker struct {
	*worker.Worker
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
	err    error         // Run's error, once done is closed
	once   sync.Once
}

// stop cancels the worker and waits for Run to return.
func (r *runningWorker) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
			if r.err != nil {
				t.Errorf("worker.Run: %v", r.err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("worker did not stop within 60s")
		}
	})
}

func (e *env) startWorker(reg *queue.Registry, cfg worker.Config) *runningWorker {
	e.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.MaintenanceInterval == 0 {
		cfg.MaintenanceInterval = 50 * time.Millisecond
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	w, err := worker.New(e.adapter, reg, cfg)
	if err != nil {
		e.t.Fatalf("worker.New: %v", err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	r := &runningWorker{Worker: w, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = w.Run(ctx); close(r.done) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) job(id uuid.UUID) *queue.JobInfo {
	e.t.Helper()
	j, err := e.adapter.GetJob(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetJob(%s): %v", id, err)
	}
	return j
}

// waitState waits until job id is in state st and returns it.
func (e *env) waitState(id uuid.UUID, st queue.JobState, within time.Duration) *queue.JobInfo {
	e.t.Helper()
	var j *queue.JobInfo
	waitFor(e.t, within, fmt.Sprintf("job %s to be %s", id, st), func() bool {
		j = e.job(id)
		return j.State == st
	})
	return j
}

func (e *env) count(where string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, "SELECT count(*) FROM tasq_jobs WHERE "+where, args...).Scan(&n); err != nil {
		e.t.Fatalf("count %s: %v", where, err)
	}
	return n
}

func mustJSON(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
}
