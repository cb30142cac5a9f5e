package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// outboxQueue is the Redis queue the outbox workload's jobs go to.
const outboxQueue = "bench_outbox"

// benchOutboxJob is the outbox workload's task: bound for Redis, dispatched
// in PostgreSQL transactions. Its Handle records how long after its
// dispatch began it started.
type benchOutboxJob struct{ SentAt int64 }

func (benchOutboxJob) Kind() string { return "bench_outbox" }
func (benchOutboxJob) Config() queue.Config {
	return queue.Config{Queue: outboxQueue, Driver: "redis", MaxRetries: 3}
}
func (j benchOutboxJob) Handle(ctx context.Context) (struct{}, error) {
	if rec, ok := ctx.Value(latencyKey{}).(*latencyRecorder); ok && j.SentAt > 0 {
		rec.add(time.Duration(time.Now().UnixNano()-j.SentAt), j.SentAt)
	}
	return struct{}{}, nil
}

// outbox measures the transactional outbox to Redis:
//   - throughput: -n jobs dispatched through the outbox in PostgreSQL
//     transactions of --batch jobs (the outbox insert rate), then delivered
//     to Redis by one relay, and by two at once (jobs relayed per second);
//   - lag: single jobs dispatched through the outbox at --rate for
//     --latency-duration, each in its own transaction, with a relay (default
//     poll) and a Redis worker running: dispatch-to-start p50/p95/p99.
func (b *bench) outbox(ctx context.Context) (err error) {
	if b.f.redisURL == "" {
		return errors.New("outbox: give the Redis to relay to with --redis-url (or TASQ_REDIS_URL)")
	}
	opt, err := goredis.ParseURL(b.f.redisURL)
	if err != nil {
		return fmt.Errorf("outbox: --redis-url: %w", err)
	}
	rc := goredis.NewClient(opt)
	defer rc.Close()
	// The benchmark's keys live under a prefix of their own, removed at the end.
	prefix := fmt.Sprintf("tasq_bench_%d:", time.Now().UnixNano())
	rd, err := redis.NewFromClient(ctx, rc, redis.Options{Prefix: prefix})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer rd.Close()
	clearRedis := func() error {
		iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 1000 {
				if err := rc.Del(ctx, keys...).Err(); err != nil {
					return err
				}
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			if err := rc.Del(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	defer func() { err = errors.Join(err, clearRedis()) }()
	client, err := queue.NewClient(b.ad, queue.WithDriver("redis", rd), queue.WithOutbox(b.ad))
	if err != nil {
		return err
	}
	targets := map[string]queue.Inserter{"redis": rd}

	for _, relays := range []int{1, 2} {
		if err := b.clearOutbox(ctx); err != nil {
			return err
		}
		t0 := time.Now()
		for done := 0; done < b.f.n; {
			n := min(b.f.batch, b.f.n-done)
			tasks := make([]any, n)
			for i := range tasks {
				tasks[i] = benchOutboxJob{}
			}
			if err := b.inTx(ctx, func(tx any) error {
				_, err := client.DispatchManyTx(ctx, tx, tasks)
				return err
			}); err != nil {
				return fmt.Errorf("outbox insert: %w", err)
			}
			done += n
		}
		insertRate := float64(b.f.n) / time.Since(t0).Seconds()
		t1 := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, relays)
		for i := range relays {
			relay, err := b.ad.NewRelay(targets, postgres.RelayOptions{Logger: b.quietLogger()})
			if err != nil {
				return err
			}
			wg.Go(func() {
				for ctx.Err() == nil {
					n, err := relay.RelayOnce(ctx)
					if err != nil {
						errs[i] = err
						return
					}
					if n == 0 {
						return
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("outbox relay: %w", err)
		}
		took := time.Since(t1)
		stats, err := b.ad.OutboxStats(ctx)
		if err != nil {
			return err
		}
		for _, s := range stats {
			if s.Pending+s.Failed > 0 {
				return fmt.Errorf("outbox relay left %d pending and %d failed jobs", s.Pending, s.Failed)
			}
		}
		fmt.Fprintf(b.out, "tasq outbox:     %d jobs inserted through the outbox at %.0f jobs/s (transactions of %d); relayed to Redis by %d relay(s) in %.2fs = %.0f jobs/s\n",
			b.f.n, insertRate, b.f.batch, relays, took.Seconds(), float64(b.f.n)/took.Seconds())
		if err := clearRedis(); err != nil {
			return err
		}
	}
	return b.outboxLag(ctx, client, rd, targets)
}

// outboxLag is the lag half of the outbox workload.
func (b *bench) outboxLag(ctx context.Context, client *queue.Client, rd *redis.Adapter, targets map[string]queue.Inserter) error {
	relay, err := b.ad.NewRelay(targets, postgres.RelayOptions{Logger: b.quietLogger()})
	if err != nil {
		return err
	}
	reg := queue.NewRegistry()
	if err := queue.Register(reg, benchOutboxJob{}); err != nil {
		return err
	}
	w, err := worker.New(rd, reg, worker.Config{Queues: []string{outboxQueue}, Concurrency: 50, Logger: b.quietLogger()})
	if err != nil {
		return err
	}
	rec := &latencyRecorder{}
	wctx, cancel := context.WithCancel(context.WithValue(ctx, latencyKey{}, rec))
	defer cancel()
	runErr := make(chan error, 2)
	go func() { runErr <- w.Run(wctx) }()
	go func() { runErr <- relay.Run(wctx) }()
	start := time.Now()
	rec.after = start.Add(time.Second).UnixNano()
	tick := time.NewTicker(time.Second / time.Duration(b.f.rate))
	defer tick.Stop()
	var sent int64
	for deadline := start.Add(b.f.latencyFor); time.Now().Before(deadline) && ctx.Err() == nil; {
		<-tick.C
		sent++
		if err := b.inTx(ctx, func(tx any) error {
			_, err := client.DispatchTx(ctx, tx, benchOutboxJob{SentAt: time.Now().UnixNano()})
			return err
		}); err != nil {
			return fmt.Errorf("outbox dispatch: %w", err)
		}
	}
	for wait := time.Now().Add(10 * time.Second); rec.seen.Load() < sent && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	for range 2 {
		if err := <-runErr; err != nil {
			return err
		}
	}
	rec.mu.Lock()
	samples := slices.Clone(rec.samples)
	rec.mu.Unlock()
	if len(samples) == 0 {
		return errors.New("outbox lag: no job started after the warm-up")
	}
	pct := func(p float64) float64 { return ms(percentile(samples, p)) }
	fmt.Fprintf(b.out, "tasq outbox lag: %d jobs at %d/s, each in its own transaction: dispatch-to-start on Redis p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (the relay woken by NOTIFY)\n",
		len(samples), b.f.rate, pct(0.50), pct(0.95), pct(0.99))
	return nil
}

// quietLogger logs warnings and errors to the benchmark's error output.
func (b *bench) quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b.errw, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// inTx runs fn in a PostgreSQL transaction of the benchmark's database and
// commits it.
func (b *bench) inTx(ctx context.Context, fn func(tx any) error) error {
	tx, err := b.ad.Pool().Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// clearOutbox empties the outbox table.
func (b *bench) clearOutbox(ctx context.Context) error {
	_, err := b.ad.Pool().Exec(ctx, `TRUNCATE tasq_outbox`)
	return err
}
