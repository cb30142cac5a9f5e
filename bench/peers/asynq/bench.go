package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	goredis "github.com/redis/go-redis/v9"
)

const (
	taskType      = "bench_noop"     // the no-op task's type
	queueName     = "default"        // asynq's default queue, the only one served
	insertBatch   = 1_000            // continuous: jobs enqueued per top-up
	backlogTarget = 20_000           // continuous: outstanding jobs to keep
	progressEvery = 2 * time.Second  // progress line interval
	latencyWarmup = time.Second      // latency: jobs dispatched earlier are not measured
	drainTimeout  = 10 * time.Second // latency: wait for queued jobs at the end
	tickBuffer    = 64               // latency: dispatch ticks that may wait for a dispatcher
)

// latencyRecorder collects enqueue-to-handler latencies on a monotonic clock
// that starts at base.
type latencyRecorder struct {
	base    time.Time
	warmup  time.Duration // jobs sent before base+warmup are not recorded
	mu      sync.Mutex
	samples []time.Duration
}

// now returns the time elapsed since base.
func (l *latencyRecorder) now() time.Duration { return time.Since(l.base) }

// record stores the latency of a job sent at offset sentAt, unless it was
// sent during the warm-up.
func (l *latencyRecorder) record(sentAt time.Duration) {
	d := l.now() - sentAt
	if sentAt < l.warmup {
		return
	}
	l.mu.Lock()
	l.samples = append(l.samples, d)
	l.mu.Unlock()
}

// percentiles returns the nearest-rank percentiles ps (0..1) in
// milliseconds, and the number of samples.
func (l *latencyRecorder) percentiles(ps ...float64) ([]float64, int) {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	l.mu.Unlock()
	slices.Sort(s)
	out := make([]float64, len(ps))
	for i, p := range ps {
		if len(s) > 0 {
			rank := max(int(math.Ceil(p*float64(len(s))))-1, 0)
			out[i] = float64(s[rank]) / float64(time.Millisecond)
		}
	}
	return out, len(s)
}

// bench holds what every workload needs.
type bench struct {
	rdb  *goredis.Client
	cfg  config
	done atomic.Int64     // handler calls returned
	lat  *latencyRecorder // latency mode only
}

// handle is the no-op handler. In latency mode the payload is the dispatch
// time (an offset on the recorder's clock) and the wait is recorded.
func (b *bench) handle(_ context.Context, t *asynq.Task) error {
	if b.lat != nil {
		if p := t.Payload(); len(p) == 8 {
			b.lat.record(time.Duration(binary.LittleEndian.Uint64(p)))
		}
	}
	b.done.Add(1)
	return nil
}

// newServer returns an asynq server configured as asynq users configure a
// throughput worker: one server (one processor), --concurrency handlers, the
// one "default" queue, --task-check-interval, everything else asynq's
// defaults (no result retention: a finished task is deleted).
func (b *bench) newServer() *asynq.Server {
	return asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency:       b.cfg.concurrency,
		Queues:            map[string]int{queueName: 1},
		TaskCheckInterval: b.cfg.taskCheckInterval,
		LogLevel:          asynq.WarnLevel,
	})
}

// enqueue enqueues n no-op tasks with --enqueuers goroutines, each issuing
// single Enqueue calls (asynq has no batch enqueue; each call is one script
// on the server).
func (b *bench) enqueue(ctx context.Context, client *asynq.Client, n int) error {
	var next atomic.Int64
	errs := make(chan error, b.cfg.enqueuers)
	var wg sync.WaitGroup
	for range min(b.cfg.enqueuers, n) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := client.EnqueueContext(ctx, asynq.NewTask(taskType, nil)); err != nil {
					errs <- fmt.Errorf("enqueueing: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when closed empty
}

// burnDown enqueues n tasks (timed), then starts the server and measures
// how long it takes until every task has been handled and marked done
// (no task pending or active in the queue).
func (b *bench) burnDown(ctx context.Context, n int) (result, error) {
	client := asynq.NewClientFromRedisClient(b.rdb)
	t0 := time.Now()
	if err := b.enqueue(ctx, client, n); err != nil {
		return result{}, err
	}
	insertSecs := time.Since(t0).Seconds()
	insertRate := float64(n) / insertSecs
	fmt.Fprintf(os.Stderr, "[asynq] burn-down: enqueued %d jobs in %.2fs (%.0f jobs/s, %d concurrent Enqueue calls)\n", n, insertSecs, insertRate, b.cfg.enqueuers)

	srv := b.newServer()
	start := time.Now()
	if err := srv.Start(asynq.HandlerFunc(b.handle)); err != nil {
		return result{}, fmt.Errorf("starting asynq server: %w", err)
	}
	defer srv.Shutdown()
	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
	last, lastAt := int64(0), start
	for b.done.Load() < int64(n) {
		select {
		case <-ctx.Done():
			return result{}, ctx.Err()
		case now := <-ticker.C:
			done := b.done.Load()
			fmt.Fprintf(os.Stderr, "[asynq] burn-down: %d/%d done, %.0f jobs/s\n", done, n, float64(done-last)/now.Sub(lastAt).Seconds())
			last, lastAt = done, now
		case <-time.After(time.Millisecond):
		}
	}
	// Every handler has returned; wait for the last "done" writes.
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	for {
		qi, err := insp.GetQueueInfo(queueName)
		if err != nil {
			return result{}, fmt.Errorf("reading queue info: %w", err)
		}
		if qi.Pending == 0 && qi.Active == 0 {
			break
		}
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	secs := time.Since(start).Seconds()
	rate := float64(n) / secs
	fmt.Printf("[asynq] burn-down: %d jobs worked in %.2fs: %.0f jobs/s (insert %.0f jobs/s)\n", n, secs, rate, insertRate)
	return result{Jobs: int64(n), Seconds: round(secs, 3), JobsPerSec: round(rate, 1), InsertJobsPerSec: ptr(round(insertRate, 1))}, nil
}

// continuous works tasks for d while a feeder keeps about backlogTarget
// tasks outstanding, and reports the tasks handled during the window.
func (b *bench) continuous(ctx context.Context, d time.Duration) (result, error) {
	client := asynq.NewClientFromRedisClient(b.rdb)
	if err := b.enqueue(ctx, client, backlogTarget); err != nil {
		return result{}, err
	}
	var inserted atomic.Int64
	inserted.Store(backlogTarget)
	srv := b.newServer()
	start := time.Now()
	if err := srv.Start(asynq.HandlerFunc(b.handle)); err != nil {
		return result{}, fmt.Errorf("starting asynq server: %w", err)
	}
	window, cancel := context.WithDeadline(ctx, start.Add(d))
	defer cancel()
	feedErr := make(chan error, 1)
	go func() {
		for window.Err() == nil {
			if inserted.Load()-b.done.Load() >= backlogTarget {
				select {
				case <-window.Done():
				case <-time.After(5 * time.Millisecond):
				}
				continue
			}
			if err := b.enqueue(ctx, client, insertBatch); err != nil {
				feedErr <- err
				return
			}
			inserted.Add(insertBatch)
		}
		feedErr <- nil
	}()
	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
	last, lastAt := int64(0), start
	for window.Err() == nil {
		select {
		case <-window.Done():
		case now := <-ticker.C:
			done := b.done.Load()
			fmt.Fprintf(os.Stderr, "[asynq] continuous: %4.1fs, %d worked, %.0f jobs/s, %d outstanding\n",
				now.Sub(start).Seconds(), done, float64(done-last)/now.Sub(lastAt).Seconds(), inserted.Load()-done)
			last, lastAt = done, now
		}
	}
	worked, secs := b.done.Load(), time.Since(start).Seconds()
	cancel()
	err := <-feedErr
	srv.Shutdown()
	if err = errors.Join(err, ctx.Err()); err != nil {
		return result{}, err
	}
	rate := float64(worked) / secs
	fmt.Printf("[asynq] continuous: %d jobs worked in %.2fs: %.0f jobs/s\n", worked, secs, rate)
	return result{Jobs: worked, Seconds: round(secs, 3), JobsPerSec: round(rate, 1)}, nil
}

// latency enqueues single tasks at rate per second for d with the server
// running, and reports percentiles of the time from the Enqueue call to the
// start of the handler; tasks enqueued in the first latencyWarmup are not
// measured. A ticker hands each enqueue to one of `dispatchers` goroutines,
// as the River peer does.
func (b *bench) latency(ctx context.Context, d time.Duration, rate, dispatchers int) (result, error) {
	lat := &latencyRecorder{warmup: latencyWarmup}
	b.lat = lat
	client := asynq.NewClientFromRedisClient(b.rdb)
	srv := b.newServer()
	lat.base = time.Now()
	if err := srv.Start(asynq.HandlerFunc(b.handle)); err != nil {
		return result{}, fmt.Errorf("starting asynq server: %w", err)
	}
	defer srv.Shutdown()

	var sent, skipped atomic.Int64
	ticks := make(chan struct{}, tickBuffer)
	errs := make(chan error, dispatchers)
	var wg sync.WaitGroup
	for range dispatchers {
		wg.Go(func() {
			for range ticks {
				p := binary.LittleEndian.AppendUint64(nil, uint64(lat.now()))
				if _, err := client.EnqueueContext(ctx, asynq.NewTask(taskType, p)); err != nil {
					errs <- fmt.Errorf("enqueueing: %w", err)
					return
				}
				sent.Add(1)
			}
		})
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	progress := time.NewTicker(progressEvery)
	deadline := time.After(d)
	var runErr error
loop:
	for {
		select {
		case <-tick.C:
			select {
			case ticks <- struct{}{}:
			default:
				skipped.Add(1)
			}
		case <-progress.C:
			ps, _ := lat.percentiles(0.5, 0.99)
			fmt.Fprintf(os.Stderr, "[asynq] latency: %4.1fs, %d sent, %d worked, p50 %.2f ms, p99 %.2f ms so far\n",
				lat.now().Seconds(), sent.Load(), b.done.Load(), ps[0], ps[1])
		case <-deadline:
			break loop
		case runErr = <-errs:
			break loop
		case <-ctx.Done():
			runErr = ctx.Err()
			break loop
		}
	}
	tick.Stop()
	progress.Stop()
	close(ticks)
	wg.Wait()
	secs := lat.now().Seconds()
	if runErr != nil {
		return result{}, runErr
	}
	for wait := time.Now(); b.done.Load() < sent.Load() && time.Since(wait) < drainTimeout; {
		time.Sleep(10 * time.Millisecond)
	}
	if done, n := b.done.Load(), sent.Load(); done < n {
		return result{}, fmt.Errorf("%d of %d tasks enqueued were handled within %s of the last enqueue", done, n, drainTimeout)
	}
	ps, samples := lat.percentiles(0.50, 0.95, 0.99)
	if samples == 0 {
		return result{}, errors.New("no latency samples recorded")
	}
	n := sent.Load()
	achieved := float64(n) / secs
	if k := skipped.Load(); k > 0 {
		fmt.Fprintf(os.Stderr, "[asynq] latency: warning: %d ticks skipped, %d dispatcher(s) could not keep up; the offered rate was not reached\n", k, dispatchers)
	}
	fmt.Printf("[asynq] latency: %d jobs at %.0f/s over %.2fs; p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (%d samples after %s warm-up)\n",
		n, achieved, secs, ps[0], ps[1], ps[2], samples, latencyWarmup)
	return result{
		Jobs: n, Seconds: round(secs, 3), JobsPerSec: round(achieved, 1),
		P50Ms: ptr(round(ps[0], 3)), P95Ms: ptr(round(ps[1], 3)), P99Ms: ptr(round(ps[2], 3)),
	}, nil
}
