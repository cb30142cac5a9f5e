package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// chaosQueue is the queue the chaos jobs run on.
const chaosQueue = "chaos"

// workerAppPrefix starts the application_name of every worker child's
// connections, which is how the termination scenario finds them.
const workerAppPrefix = "chaos-worker-"

// statsPrefix starts the line on which a child that stops gracefully prints
// its worker's Stats as JSON.
const statsPrefix = "chaos-stats "

// Job is the chaos task. Every execution first records itself in
// chaos_runs, in the same database, then sleeps 0-20 ms and returns N, the
// job's number, as its result.
type Job struct {
	queue.TaskBase
	N int

	rec *recorder // set by the worker's Resolver before each attempt
}

// Kind names the task "chaos".
func (*Job) Kind() string { return "chaos" }

// Config puts the task on chaosQueue with a retry budget that the faults
// should never exhaust.
func (*Job) Config() queue.Config {
	p := currentPlan()
	return queue.Config{Queue: chaosQueue, MaxRetries: p.MaxRetries, RetryDelay: p.RetryDelay}
}

// recordSQL records one execution: the job, its 0-indexed attempt, the
// worker, and the claim token under which this worker holds the job as the
// execution starts (NULL when it holds it no more: the claim was lost before
// Handle ran). The verification matches every completion with the recorded
// execution of its (worker, token).
const recordSQL = `
INSERT INTO chaos_runs (job_id, attempt, worker, token)
SELECT $1, $2, $3, (SELECT claim_token FROM tasq_jobs WHERE id = $1 AND state = 'running' AND attempted_by = $3)`

// Handle records the execution, sleeps a little and returns N. A failed
// record fails the attempt, so a completed job always has its execution
// recorded.
func (j *Job) Handle(ctx context.Context) (int, error) {
	if j.rec == nil {
		return 0, errors.New("chaos: Job ran without its recorder; the worker needs Config.Resolver")
	}
	m := j.Metadata()
	if _, err := j.rec.pool.Exec(ctx, recordSQL, m.ID, m.Attempt, j.rec.worker); err != nil {
		return 0, fmt.Errorf("chaos: record the execution of job %s: %w", m.ID, err)
	}
	t := time.NewTimer(rand.N(21 * time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
		return j.N, nil
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
}

// recorder gives Job its database handle and its worker's ID. It is the
// worker's queue.Resolver, so it reaches every decoded Job before Handle.
type recorder struct {
	pool   *pgxpool.Pool
	worker string
}

// Resolve implements queue.Resolver.
func (r *recorder) Resolve(_ context.Context, task any, _ []byte) error {
	switch j := task.(type) {
	case *Job:
		j.rec = r
	case *TxJob:
		j.rec = r
	default:
		return fmt.Errorf("chaos: the recorder got a %T, want *chaos.Job or *chaos.TxJob", task)
	}
	return nil
}

// childMain runs one worker until SIGTERM (a graceful stop, after which it
// prints its Stats) or SIGKILL.
func childMain(workerID string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go exitWithParent(os.Getppid())
	p := currentPlan()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv(envLog) == "1" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "chaos worker %s: %v\n", workerID, err)
		return 2
	}

	cfg, err := pgxpool.ParseConfig(os.Getenv(envChildDSN))
	if err != nil {
		return fail(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = workerAppPrefix + workerID
	// Room for every Handle's record plus the worker's own statements, so
	// that no lease renewal waits for a connection.
	cfg.MaxConns = int32(p.Concurrency + 8)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	// The database may be restarting (or its connections cut) as this
	// worker starts: keep trying for a while.
	var a *postgres.Adapter
	for deadline := time.Now().Add(30 * time.Second); ; {
		a, err = postgres.NewFromPool(ctx, pool)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return 0 // stopped before the worker started: it holds nothing
	}
	if err != nil {
		return fail(err)
	}

	reg := queue.NewRegistry()
	if err := queue.Register(reg, &Job{}); err != nil {
		return fail(err)
	}
	if err := queue.Register(reg, &TxJob{}); err != nil {
		return fail(err)
	}
	w, err := worker.New(a, reg, worker.Config{
		Queues: []string{chaosQueue}, Concurrency: p.Concurrency, LeaseDuration: p.LeaseDuration,
		PollInterval: p.PollInterval, MaintenanceInterval: p.MaintenanceInterval,
		ShutdownGrace: 5 * time.Second, ID: workerID, Logger: logger,
		// The maintenance leader is killed too in the SIGKILL scenario: a
		// short term keeps the rescue of its jobs within a few leases.
		LeaderTTL: 3 * p.LeaseDuration,
		Resolver:  &recorder{pool: pool, worker: workerID},
	})
	if err != nil {
		return fail(err)
	}
	if err := w.Run(ctx); err != nil {
		return fail(err)
	}
	b, err := json.Marshal(w.Stats())
	if err != nil {
		return fail(err)
	}
	fmt.Printf("%s%s\n", statsPrefix, b)
	return 0
}

// exitWithParent ends the child when the test process that started it is
// gone (an interrupted test run skips its cleanups), so that no worker is
// left running against a database that is going away.
func exitWithParent(parent int) {
	for {
		time.Sleep(200 * time.Millisecond)
		if os.Getppid() != parent {
			os.Exit(3)
		}
	}
}
