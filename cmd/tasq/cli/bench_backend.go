package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/adapters/mysql"
	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// benchRedisPrefix is appended to the Redis key prefix of the URL (default
// redis.DefaultPrefix), so that the benchmark's keys live apart from every
// other job of that prefix: "tasq:" becomes "tasq:bench:". No key of an
// adapter on the shorter prefix starts with it (they go on with job:,
// avail:, idx:, jobs, queues, ...), so the reset may delete them all.
const benchRedisPrefix = "bench:"

// benchOnBackend reports whether bench runs mode on the backend driver
// through the generic path (runBenchBackend): burn-down, continuous and
// latency on Redis and MySQL. Every other mode and backend goes to the
// PostgreSQL path, which refuses a URL of another backend.
func benchOnBackend(driver, mode string) bool {
	if driver != driverRedis && driver != driverMySQL {
		return false
	}
	switch mode {
	case "all", "burn-down", "continuous", "latency":
		return true
	}
	return false
}

// backendBench runs the three core workloads through the queue.Adapter
// seam: client.DispatchMany to insert, a worker.Worker on the adapter to
// work. It borrows bench's insert, progress and print, which touch no
// PostgreSQL, so its output lines and RESULT JSON are the same.
type backendBench struct {
	*bench
	driver string
	ad     queue.Adapter
	// reset removes the benchmark's own jobs: its key prefix on Redis, its
	// queue on MySQL.
	resetJobs func(context.Context) error
}

// runBenchBackend is `tasq bench` on a backend other than PostgreSQL.
func (a *app) runBenchBackend(ctx context.Context, cmd *cobra.Command, f *benchFlags, be backend) (err error) {
	if f.otel || f.prom || !f.limits.IsZero() {
		return fmt.Errorf("bench on %s: --otel, --prom and the queue limits run on PostgreSQL only", be.driver)
	}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	bb := &backendBench{driver: be.driver}
	switch be.driver {
	case driverRedis:
		u, prefix, perr := benchRedisURL(be.url)
		if perr != nil {
			return perr
		}
		ad, oerr := redis.New(ctx, u)
		if oerr != nil {
			return fmt.Errorf("open the redis backend: %w", oerr)
		}
		defer ad.Close()
		bb.ad = ad
		bb.resetJobs = func(ctx context.Context) error { return deleteRedisPrefix(ctx, ad, prefix) }
		fmt.Fprintf(errw, "[tasq] bench on redis, keys under %q (deleted before and after each workload)\n", prefix)
	case driverMySQL:
		if err := migrations.UpMySQL(ctx, be.url); err != nil {
			return err
		}
		ad, oerr := mysql.New(ctx, be.url)
		if oerr != nil {
			return fmt.Errorf("open the mysql backend: %w", oerr)
		}
		defer ad.Close()
		bb.ad = ad
		bb.resetJobs = func(ctx context.Context) error {
			if _, err := ad.DB().ExecContext(ctx, `DELETE FROM tasq_jobs WHERE queue = ?`, benchQueue); err != nil {
				return fmt.Errorf("clear benchmark jobs: %w", err)
			}
			return nil
		}
		fmt.Fprintf(errw, "[tasq] bench on mysql, queue %s (its jobs are deleted before and after each workload)\n", benchQueue)
	default:
		return fmt.Errorf("bench: no generic path for the %s backend", be.driver)
	}
	client, err := queue.NewClient(bb.ad)
	if err != nil {
		return err
	}
	con := newConsole(out, errw)
	bb.bench = &bench{f: f, client: client, out: con.Out(), errw: con.Err(), con: con}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	modes := []string{f.mode}
	if f.mode == "all" {
		modes = []string{"burn-down", "continuous", "latency"}
	}
	for _, m := range modes {
		if err := bb.resetJobs(ctx); err != nil {
			return err
		}
		var res benchResult
		switch m {
		case "burn-down":
			res, err = bb.burnDown(ctx)
		case "continuous":
			res, err = bb.continuous(ctx)
		case "latency":
			res, err = bb.latency(ctx)
		}
		if err != nil {
			return fmt.Errorf("bench %s on %s: %w", m, bb.driver, err)
		}
		bb.print(res)
	}
	return bb.resetJobs(context.WithoutCancel(ctx))
}

// benchRedisURL returns the Redis URL with the benchmark's own key prefix
// (the URL's key_prefix, or the default, followed by benchRedisPrefix).
func benchRedisURL(raw string) (string, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("bench: cannot parse the Redis URL: %w", urlErr(err))
	}
	q := u.Query()
	prefix := q.Get(redis.PrefixParam)
	if prefix == "" {
		prefix = redis.DefaultPrefix
	}
	prefix += benchRedisPrefix
	q.Set(redis.PrefixParam, prefix)
	u.RawQuery = q.Encode()
	return u.String(), prefix, nil
}

// urlErr drops the URL (and any password in it) from a *url.Error.
func urlErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// deleteRedisPrefix deletes every key under prefix (SCAN and UNLINK in
// batches), and nothing else.
func deleteRedisPrefix(ctx context.Context, ad *redis.Adapter, prefix string) error {
	c := ad.Client()
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("clear benchmark keys under %q: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("clear benchmark keys under %q: %w", prefix, err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// newWorker is bench.newWorker on the adapter of this backend.
func (bb *backendBench) newWorker(maxTasks int) (*worker.Worker, error) {
	reg := queue.NewRegistry()
	if err := errors.Join(queue.Register(reg, benchNoop{}), queue.Register(reg, benchLatency{})); err != nil {
		return nil, err
	}
	return worker.New(bb.ad, reg, worker.Config{
		Queues: []string{benchQueue}, Concurrency: bb.f.concurrency, MaxTasks: maxTasks,
		Logger: slog.New(slog.NewTextHandler(bb.errw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

// completedJobs counts the benchmark queue's completed jobs, from the
// backend (queue.StatsReader).
func (bb *backendBench) completedJobs(ctx context.Context) (int64, error) {
	sr, ok := bb.ad.(queue.StatsReader)
	if !ok {
		return 0, fmt.Errorf("the %s adapter cannot count jobs (no queue.StatsReader)", bb.driver)
	}
	stats, err := sr.Stats(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range stats {
		if s.Queue == benchQueue && s.State == queue.StateCompleted {
			n += s.Count
		}
	}
	return n, nil
}

// burnDown inserts -n jobs with DispatchMany, then works them all and
// checks with the backend that every one completed.
func (bb *backendBench) burnDown(ctx context.Context) (benchResult, error) {
	n := bb.f.n
	fmt.Fprintf(bb.errw, "[tasq] burn-down: inserting %d jobs in batches of %d\n", n, bb.f.batch)
	insertRate, err := bb.insert(ctx, n)
	if err != nil {
		return benchResult{}, err
	}
	fmt.Fprintf(bb.errw, "[tasq] burn-down: inserted at %.0f jobs/s; working them with concurrency %d\n", insertRate, bb.f.concurrency)
	w, err := bb.newWorker(n)
	if err != nil {
		return benchResult{}, err
	}
	stop := make(chan struct{})
	go bb.progress("burn-down", w, int64(n), stop)
	start := time.Now()
	err = w.Run(ctx)
	el := time.Since(start)
	close(stop)
	if err != nil {
		return benchResult{}, err
	}
	completed, err := bb.completedJobs(ctx)
	if err != nil {
		return benchResult{}, err
	}
	if completed != int64(n) {
		return benchResult{}, fmt.Errorf("%d of %d jobs completed (interrupted?)", completed, n)
	}
	return benchResult{System: "tasq", Mode: "burn-down", Jobs: completed, Seconds: el.Seconds(),
		JobsPerSec: float64(completed) / el.Seconds(), InsertPerSec: insertRate, Concurrency: bb.f.concurrency}, nil
}

// continuous is bench.continuous on this backend: a backlog of about
// 20,000 jobs kept for --duration while a worker drains it.
func (bb *backendBench) continuous(ctx context.Context) (benchResult, error) {
	const backlog = 20000
	w, err := bb.newWorker(0)
	if err != nil {
		return benchResult{}, err
	}
	if _, err := bb.insert(ctx, backlog); err != nil {
		return benchResult{}, err
	}
	inserted := int64(backlog)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	stop := make(chan struct{})
	go bb.progress("continuous", w, 0, stop)
	start := time.Now()
	deadline := start.Add(bb.f.duration)
	var insertTime time.Duration
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if inserted-w.Stats().Completed >= backlog {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		t0 := time.Now()
		if _, err := bb.insert(ctx, bb.f.batch); err != nil {
			close(stop)
			return benchResult{}, err
		}
		insertTime += time.Since(t0)
		inserted += int64(bb.f.batch)
	}
	done := w.Stats().Completed
	el := time.Since(start)
	close(stop)
	cancel()
	if err := <-runErr; err != nil {
		return benchResult{}, err
	}
	if ctx.Err() != nil {
		return benchResult{}, ctx.Err()
	}
	res := benchResult{System: "tasq", Mode: "continuous", Jobs: done, Seconds: el.Seconds(),
		JobsPerSec: float64(done) / el.Seconds(), Concurrency: bb.f.concurrency}
	if insertTime > 0 {
		res.InsertPerSec = float64(inserted-backlog) / insertTime.Seconds()
	}
	return res, nil
}

// latency is bench.latency on this backend: single Dispatch calls at
// --rate (up to 4 in flight), dispatch-to-start percentiles after a 1 s
// warm-up. It fails unless every job dispatched started.
func (bb *backendBench) latency(ctx context.Context) (benchResult, error) {
	w, err := bb.newWorker(0)
	if err != nil {
		return benchResult{}, err
	}
	rec := &latencyRecorder{}
	wctx, cancel := context.WithCancel(context.WithValue(ctx, latencyKey{}, rec))
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	start := time.Now()
	rec.after = start.Add(time.Second).UnixNano()
	fmt.Fprintf(bb.errw, "[tasq] latency: dispatching %d jobs/s for %v (first second is warm-up)\n", bb.f.rate, bb.f.latencyFor)
	tick := time.NewTicker(time.Second / time.Duration(bb.f.rate))
	defer tick.Stop()
	var sent int64
	var dispatchErr atomic.Pointer[error]
	inflight := make(chan struct{}, 4)
	var dispatches sync.WaitGroup
	deadline := start.Add(bb.f.latencyFor)
	for time.Now().Before(deadline) && ctx.Err() == nil && dispatchErr.Load() == nil {
		<-tick.C
		inflight <- struct{}{}
		sent++
		dispatches.Go(func() {
			defer func() { <-inflight }()
			if _, err := bb.client.Dispatch(ctx, benchLatency{SentAt: time.Now().UnixNano()}); err != nil {
				dispatchErr.CompareAndSwap(nil, &err)
			}
		})
	}
	dispatches.Wait()
	if p := dispatchErr.Load(); p != nil {
		return benchResult{}, *p
	}
	for wait := time.Now().Add(10 * time.Second); rec.seen.Load() < sent && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-runErr; err != nil {
		return benchResult{}, err
	}
	if ctx.Err() != nil {
		return benchResult{}, ctx.Err()
	}
	if seen := rec.seen.Load(); seen < sent {
		return benchResult{}, fmt.Errorf("%d of %d jobs dispatched started within 10 s of the last dispatch", seen, sent)
	}
	rec.mu.Lock()
	samples := slices.Clone(rec.samples)
	rec.mu.Unlock()
	if len(samples) == 0 {
		return benchResult{}, errors.New("no job started after the warm-up")
	}
	pct := func(p float64) float64 { return ms(percentile(samples, p)) }
	el := time.Since(start)
	return benchResult{System: "tasq", Mode: "latency", Jobs: int64(len(samples)), Seconds: el.Seconds(),
		P50ms: pct(0.50), P95ms: pct(0.95), P99ms: pct(0.99), RatePerSecond: bb.f.rate, Concurrency: bb.f.concurrency}, nil
}
