package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
)

// benchDispatchApp is the application_name of the notify workload's
// dispatching connections, so that the wait sampler finds them.
const benchDispatchApp = "tasq_bench_dispatch"

// The BASELINE of the notify workload is the same adapter opened with
// postgres.WithoutWakeUps: the same statement, pool, connections and
// Dispatch path, with no wake-up sent — so the two differ by the wake-up alone.

// notifyWaitsSQL classifies the dispatching connections ($1 is their
// application_name): what each active one waits on ("running": nothing, on
// the CPU or ready for it), or "idle" between statements (the round trip
// and the Go side). A commit waiting for the NOTIFY queue's global lock
// shows as Lock:object; a commit waiting for the WAL flush as
// IO:WALSync / LWLock:WALWrite.
const notifyWaitsSQL = `
SELECT CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' || wait_event, 'running')
            ELSE coalesce(state, 'unknown') END,
       count(*)
FROM pg_stat_activity
WHERE application_name = $1 AND pid <> pg_backend_pid() AND query NOT LIKE 'LISTEN%'
GROUP BY 1`

// notify measures single-job Dispatch from 1, 8, 32 (--dispatchers)
// concurrent goroutines, each on a pool with as many connections, with the
// adapter's insert (INSERT + pg_notify) and with the baseline statement
// (the same INSERT without pg_notify). PostgreSQL takes a database-wide
// lock when a transaction that sent a NOTIFY commits, and holds it until
// the commit record is flushed, so such commits may be serialised where
// plain ones share a WAL flush (group commit). The numbers say whether
// that costs anything at these concurrencies.
func (b *bench) notify(ctx context.Context) error {
	var version, syncCommit, fsync, walSync, commitDelay string
	if err := b.ad.Pool().QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit'),
		current_setting('fsync'), current_setting('wal_sync_method'), current_setting('commit_delay')`).
		Scan(&version, &syncCommit, &fsync, &walSync, &commitDelay); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "tasq notify: PostgreSQL %s, synchronous_commit=%s, fsync=%s, wal_sync_method=%s, commit_delay=%s; %v per measurement after a warm-up\n",
		version, syncCommit, fsync, walSync, commitDelay, b.f.notifyFor)

	// One listener, as a worker has, so that the notifications are read.
	lctx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	heard, err := b.ad.Subscribe(lctx)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var notifications atomic.Int64
	var listening sync.WaitGroup
	listening.Go(func() {
		for range heard {
			notifications.Add(1)
		}
	})
	defer listening.Wait()
	defer stopListen()

	// A warm-up of both statements at the highest concurrency, so that the
	// first measurement does not pay for a cold server alone.
	if err := b.notifyWarmUp(ctx, slices.Max(b.f.dispatchers)); err != nil {
		return err
	}
	for k, c := range b.f.dispatchers {
		ad, quiet, pool, err := b.dispatchAdapter(ctx, c)
		if err != nil {
			return err
		}
		type variant struct {
			name string
			a    queue.Adapter
			i    int // where its result goes: 0 without, 1 with
		}
		// The order alternates from one concurrency to the next, so that a
		// drift (WAL segments being made, checkpoints) does not always
		// favour the same variant.
		order := []variant{{"without-notify", quiet, 0}, {"notify", ad, 1}}
		if k%2 == 1 {
			slices.Reverse(order)
		}
		var results [2]benchResult
		for _, v := range order {
			if err := b.reset(ctx); err != nil {
				ad.Close()
				quiet.Close()
				pool.Close()
				return err
			}
			before := notifications.Load()
			res, err := b.dispatchLoad(ctx, v.a, c)
			if err != nil {
				ad.Close()
				quiet.Close()
				pool.Close()
				return fmt.Errorf("%s, %d dispatchers: %w", v.name, c, err)
			}
			res.Variant = v.name
			results[v.i] = res
			// The listener may still be reading the last notifications.
			time.Sleep(100 * time.Millisecond)
			b.printNotify(res, notifications.Load()-before)
		}
		ad.Close()
		quiet.Close()
		pool.Close()
		fmt.Fprintf(b.out, "tasq notify: %2d dispatchers: with NOTIFY %.0f jobs/s = %.2fx the baseline's %.0f; p50 %.2f vs %.2f ms, p99 %.2f vs %.2f ms\n",
			c, results[1].JobsPerSec, results[1].JobsPerSec/results[0].JobsPerSec, results[0].JobsPerSec,
			results[1].P50ms, results[0].P50ms, results[1].P99ms, results[0].P99ms)
	}
	return nil
}

func (b *bench) notifyWarmUp(ctx context.Context, c int) error {
	ad, quiet, pool, err := b.dispatchAdapter(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	defer ad.Close()
	defer quiet.Close()
	saved := b.f.notifyFor
	defer func() { b.f.notifyFor = saved }()
	b.f.notifyFor = 500 * time.Millisecond
	fmt.Fprintf(b.errw, "[tasq] notify: warming up with %d dispatchers\n", c)
	for _, a := range []queue.Adapter{quiet, ad} {
		if _, err := b.dispatchLoad(ctx, a, c); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return b.reset(ctx)
}

// dispatchAdapter opens an adapter on a pool of its own with exactly c
// connections, all open, named benchDispatchApp. The bench's own pool has
// pgxpool's default size (4 on 2 cores), which would cap 8 or 32
// dispatchers at 4 statements in flight.
// quiet is the same pool's adapter with postgres.WithoutWakeUps, the baseline.
func (b *bench) dispatchAdapter(ctx context.Context, c int) (ad, quiet *postgres.Adapter, pool *pgxpool.Pool, err error) {
	cfg := b.ad.Pool().Config()
	cfg.MaxConns, cfg.MinConns = int32(c), int32(c)
	cfg.ConnConfig.RuntimeParams["application_name"] = benchDispatchApp
	pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open a pool of %d connections: %w", c, err)
	}
	logger := postgres.WithLogger(slog.New(slog.NewTextHandler(b.errw, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if ad, err = postgres.NewFromPool(ctx, pool, logger); err == nil {
		quiet, err = postgres.NewFromPool(ctx, pool, logger, postgres.WithoutWakeUps())
	}
	if err != nil {
		if ad != nil {
			ad.Close()
		}
		pool.Close()
		return nil, nil, nil, err
	}
	// Open every connection now rather than during the measurement.
	conns := make([]*pgxpool.Conn, 0, c)
	for range c {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			for _, held := range conns {
				held.Release()
			}
			ad.Close()
			quiet.Close()
			pool.Close()
			return nil, nil, nil, fmt.Errorf("open %d connections: %w", c, err)
		}
		conns = append(conns, conn)
	}
	for _, conn := range conns {
		conn.Release()
	}
	return ad, quiet, pool, nil
}

// dispatchLoad runs c goroutines that Dispatch one job at a time through a
// client on a, for a warm-up and then --notify-duration, and returns the
// rate and the dispatch latencies of the measured window.
func (b *bench) dispatchLoad(ctx context.Context, a queue.Adapter, c int) (benchResult, error) {
	client, err := queue.NewClient(a)
	if err != nil {
		return benchResult{}, err
	}
	warm := min(time.Second, b.f.notifyFor/2)
	start := time.Now()
	from, end := start.Add(warm), start.Add(warm+b.f.notifyFor)
	lat := make([][]time.Duration, c)
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for g := range c {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && failed.Load() == nil; i++ {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				if _, err := client.Dispatch(ctx, benchNoop{N: i}); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				if t1 := time.Now(); !t0.Before(from) && !t1.After(end) {
					lat[g] = append(lat[g], t1.Sub(t0))
				}
			}
		})
	}
	time.Sleep(time.Until(from))
	samp := b.startWaitSampler(ctx, notifyWaitsSQL, benchDispatchApp)
	time.Sleep(time.Until(end))
	waits := samp.stop()
	wg.Wait()
	if p := failed.Load(); p != nil {
		return benchResult{}, *p
	}
	if ctx.Err() != nil {
		return benchResult{}, ctx.Err()
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return benchResult{}, errors.New("no dispatch finished in the measured window")
	}
	pct := func(p float64) float64 { return ms(percentile(all, p)) }
	return benchResult{System: "tasq", Mode: "notify", Jobs: int64(len(all)), Seconds: b.f.notifyFor.Seconds(),
		JobsPerSec: float64(len(all)) / b.f.notifyFor.Seconds(), P50ms: pct(0.50), P95ms: pct(0.95), P99ms: pct(0.99),
		Dispatchers: c, Waits: waits}, nil
}

func (b *bench) printNotify(r benchResult, heard int64) {
	what := "with wake-ups (the adapter as shipped)   "
	if r.Variant != "notify" {
		what = "without wake-ups (WithoutWakeUps)       "
	}
	fmt.Fprintf(b.out, "tasq notify: %2d dispatchers, %s: %6.0f jobs/s, p50 %.2f ms, p99 %.2f ms (%d dispatches; listener heard %d notifications)\n",
		r.Dispatchers, what, r.JobsPerSec, r.P50ms, r.P99ms, r.Jobs, heard)
	if len(r.Waits) > 0 {
		fmt.Fprintf(b.out, "  the %d dispatching backends, on average: %s\n", r.Dispatchers, formatWaits(r.Waits, 8))
	}
	if b.f.json {
		b.print(r)
	}
}
