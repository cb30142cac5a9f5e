package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
)

const (
	insertBatch   = 1_000            // jobs per InsertMany call
	backlogTarget = 20_000           // continuous: outstanding jobs to keep
	progressEvery = 2 * time.Second  // progress line interval
	latencyWarmup = time.Second      // latency: jobs dispatched earlier are not measured
	drainTimeout  = 10 * time.Second // latency: wait for queued jobs at the end
	tickBuffer    = 64               // latency: dispatch ticks that may wait for a dispatcher
	stopTimeout   = 30 * time.Second // graceful client stop
	eventBuffer   = 100_000          // subscription buffer (completer batches are up to 5000)
)

// noopArgs is the benchmark job, kind "bench_noop". SentAt is set in latency
// mode only: the dispatch time, as an offset on the run's monotonic clock.
type noopArgs struct {
	SentAt time.Duration `json:"sent_at,omitempty"`
}

// Kind returns the job kind, "bench_noop".
func (noopArgs) Kind() string { return "bench_noop" }

// noopWorker does no work. In latency mode it records how long each job
// waited between its dispatch and the start of Work.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	lat *latencyRecorder // nil outside latency mode
}

// Work records the job's latency when measuring, and returns at once.
func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	if w.lat != nil {
		w.lat.record(job.Args.SentAt)
	}
	return nil
}

// latencyRecorder collects dispatch-to-work latencies on a monotonic clock
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

// percentile returns the nearest-rank percentiles ps (0..1) in milliseconds,
// and the number of samples.
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
	pool   *pgxpool.Pool
	driver *riverpgxv5.Driver
	worker *noopWorker
}

// session is one River client plus a counter of the jobs it finished, fed by
// the client's event subscription. (Events are sent after the completer has
// written the job's final state, so they count fully finished jobs.)
type session struct {
	client      *river.Client[pgx.Tx]
	unsubscribe func()
	done        atomic.Int64  // jobs finished so far
	target      int64         // when done reaches target, reached is closed
	reached     chan struct{} // closed when done reaches target
	reachedAt   time.Time     // written before reached is closed
}

// newSession creates a River client (not started yet) and starts counting
// its finished jobs. A target of 0 means no target.
func (b *bench) newSession(target int64) (*session, error) {
	client, err := newClient(b.driver, b.worker)
	if err != nil {
		return nil, err
	}
	events, unsubscribe := client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: eventBuffer,
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
	})
	s := &session{client: client, unsubscribe: unsubscribe, target: target, reached: make(chan struct{})}
	go s.count(events)
	return s, nil
}

// count consumes completion events until the subscription closes. A no-op
// job should never fail; if one does, it is reported and counted only once it
// is discarded for good.
func (s *session) count(events <-chan *river.Event) {
	for ev := range events {
		switch ev.Kind {
		case river.EventKindJobFailed:
			fmt.Fprintf(os.Stderr, "[river] warning: job %d failed (state %s)\n", ev.Job.ID, ev.Job.State)
			if ev.Job.State != rivertype.JobStateDiscarded {
				continue // it will be retried
			}
		case river.EventKindJobCancelled:
			fmt.Fprintf(os.Stderr, "[river] warning: job %d cancelled\n", ev.Job.ID)
		}
		if s.done.Add(1) == s.target {
			s.reachedAt = time.Now()
			close(s.reached)
		}
	}
}

// stop shuts the client down gracefully: it stops fetching and waits for
// the jobs it holds to finish.
func (s *session) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err := s.client.Stop(ctx)
	s.unsubscribe()
	if err != nil {
		return fmt.Errorf("stopping River client: %w", err)
	}
	return nil
}

// newBatch returns insertBatch InsertMany parameters for no-op jobs.
func newBatch() []river.InsertManyParams {
	params := make([]river.InsertManyParams, insertBatch)
	for i := range params {
		params[i].Args = noopArgs{}
	}
	return params
}

// insertJobs inserts n no-op jobs with InsertMany, insertBatch at a time.
func insertJobs(ctx context.Context, client *river.Client[pgx.Tx], n int) error {
	params := newBatch()
	for left := n; left > 0; left -= insertBatch {
		if _, err := client.InsertMany(ctx, params[:min(left, insertBatch)]); err != nil {
			return fmt.Errorf("inserting jobs: %w", err)
		}
	}
	return nil
}

// burnDown inserts n jobs (timed), then starts the client and measures how
// long it takes to finish them all.
func (b *bench) burnDown(ctx context.Context, n int) (result, error) {
	s, err := b.newSession(int64(n))
	if err != nil {
		return result{}, err
	}

	t0 := time.Now()
	if err := insertJobs(ctx, s.client, n); err != nil {
		return result{}, err
	}
	insertRate := float64(n) / time.Since(t0).Seconds()
	fmt.Fprintf(os.Stderr, "[river] burn-down: inserted %d jobs in %.2fs (%.0f jobs/s)\n", n, time.Since(t0).Seconds(), insertRate)

	start := time.Now()
	if err := s.client.Start(ctx); err != nil {
		return result{}, fmt.Errorf("starting River client: %w", err)
	}
	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
	end, last, lastAt := time.Time{}, int64(0), start
	for end.IsZero() {
		select {
		case <-s.reached:
			end = s.reachedAt
		case <-ctx.Done():
			return result{}, errors.Join(ctx.Err(), s.stop())
		case now := <-ticker.C:
			done := s.done.Load()
			fmt.Fprintf(os.Stderr, "[river] burn-down: %d/%d done, %.0f jobs/s\n",
				done, n, float64(done-last)/now.Sub(lastAt).Seconds())
			// No events for a whole interval: if River dropped some, the
			// table still tells whether everything is finished.
			if done == last {
				if fin, err := countFinished(ctx, b.pool); err == nil && fin >= int64(n) {
					fmt.Fprintln(os.Stderr, "[river] warning: completion events were lost; end time taken from the table")
					end = now
				}
			}
			last, lastAt = done, now
		}
	}
	if err := s.stop(); err != nil {
		return result{}, err
	}

	secs := end.Sub(start).Seconds()
	rate := float64(n) / secs
	fmt.Printf("[river] burn-down: %d jobs worked in %.2fs: %.0f jobs/s (insert %.0f jobs/s)\n", n, secs, rate, insertRate)
	return result{Jobs: int64(n), Seconds: round(secs, 3), JobsPerSec: round(rate, 1), InsertJobsPerSec: ptr(round(insertRate, 1))}, nil
}

// continuous works jobs for d while a feeder keeps about backlogTarget jobs
// outstanding, and reports the jobs finished during the window.
func (b *bench) continuous(ctx context.Context, d time.Duration) (result, error) {
	s, err := b.newSession(0)
	if err != nil {
		return result{}, err
	}
	// Fill the backlog before the clock starts.
	if err := insertJobs(ctx, s.client, backlogTarget); err != nil {
		return result{}, err
	}
	var inserted atomic.Int64
	inserted.Store(backlogTarget)

	start := time.Now()
	if err := s.client.Start(ctx); err != nil {
		return result{}, fmt.Errorf("starting River client: %w", err)
	}
	window, cancel := context.WithDeadline(ctx, start.Add(d))
	defer cancel()
	feedErr := make(chan error, 1)
	go func() { feedErr <- feed(ctx, window, s, &inserted) }()

	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
	last, lastAt := int64(0), start
	for window.Err() == nil {
		select {
		case <-window.Done():
		case now := <-ticker.C:
			done := s.done.Load()
			fmt.Fprintf(os.Stderr, "[river] continuous: %4.1fs, %d worked, %.0f jobs/s, %d outstanding\n",
				now.Sub(start).Seconds(), done, float64(done-last)/now.Sub(lastAt).Seconds(), inserted.Load()-done)
			last, lastAt = done, now
		}
	}
	worked, secs := s.done.Load(), time.Since(start).Seconds()
	cancel()
	err = errors.Join(<-feedErr, s.stop(), ctx.Err())
	if err != nil {
		return result{}, err
	}

	rate := float64(worked) / secs
	fmt.Printf("[river] continuous: %d jobs worked in %.2fs: %.0f jobs/s\n", worked, secs, rate)
	return result{Jobs: worked, Seconds: round(secs, 3), JobsPerSec: round(rate, 1)}, nil
}

// feed keeps about backlogTarget jobs outstanding (inserted but not yet
// finished), topping up with InsertMany batches until window ends. Inserts
// run under ctx, not window, so that none is cut off halfway.
func feed(ctx, window context.Context, s *session, inserted *atomic.Int64) error {
	params := newBatch()
	for window.Err() == nil {
		if inserted.Load()-s.done.Load() >= backlogTarget {
			select {
			case <-window.Done():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		if _, err := s.client.InsertMany(ctx, params); err != nil {
			return fmt.Errorf("inserting jobs: %w", err)
		}
		inserted.Add(insertBatch)
	}
	return nil
}

// latency dispatches single jobs (one Insert per job) at rate per second for
// d with the client running, and reports percentiles of the time from the
// Insert call to the start of Work; jobs dispatched in the first
// latencyWarmup are not measured. A ticker hands out one dispatch per tick
// to `dispatchers` goroutines, so that a slow commit (about 2.7 ms with
// fsync on) does not lower the offered rate; dispatchers=1 inserts strictly
// one at a time. Ticks that find tickBuffer ticks already waiting are
// skipped and reported.
func (b *bench) latency(ctx context.Context, d time.Duration, rate, dispatchers int) (result, error) {
	lat := &latencyRecorder{warmup: latencyWarmup}
	b.worker.lat = lat
	s, err := b.newSession(0)
	if err != nil {
		return result{}, err
	}
	lat.base = time.Now()
	if err := s.client.Start(ctx); err != nil {
		return result{}, fmt.Errorf("starting River client: %w", err)
	}

	// Dispatchers: each tick on `ticks` becomes one single-job Insert,
	// stamped with the time of the call. The small buffer absorbs short
	// stalls (such as waiting for a pool connection) without losing ticks.
	var sent, skipped atomic.Int64
	ticks := make(chan struct{}, tickBuffer)
	errs := make(chan error, dispatchers)
	var wg sync.WaitGroup
	for range dispatchers {
		wg.Go(func() {
			for range ticks {
				if _, err := s.client.Insert(ctx, noopArgs{SentAt: lat.now()}, nil); err != nil {
					errs <- fmt.Errorf("inserting job: %w", err)
					return
				}
				sent.Add(1)
			}
		})
	}

	dispatchStart := time.Now()
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
				skipped.Add(1) // the dispatchers are far behind
			}
		case <-progress.C:
			ps, _ := lat.percentiles(0.5, 0.99)
			fmt.Fprintf(os.Stderr, "[river] latency: %4.1fs, %d sent, %d worked, p50 %.2f ms, p99 %.2f ms so far\n",
				lat.now().Seconds(), sent.Load(), s.done.Load(), ps[0], ps[1])
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
	dispatchSecs := time.Since(dispatchStart).Seconds()
	if runErr != nil {
		return result{}, errors.Join(runErr, s.stop())
	}

	// Let the last jobs run so that their latencies count too.
	for wait := time.Now(); s.done.Load() < sent.Load() && time.Since(wait) < drainTimeout; {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.stop(); err != nil {
		return result{}, err
	}

	ps, samples := lat.percentiles(0.50, 0.95, 0.99)
	if samples == 0 {
		return result{}, errors.New("no latency samples recorded")
	}
	n := sent.Load()
	achieved := float64(n) / secs
	dispatched := float64(n) / dispatchSecs
	if k := skipped.Load(); k > 0 {
		fmt.Fprintf(os.Stderr, "[river] latency: warning: %d ticks skipped, %d dispatcher(s) could not keep up; the offered rate was not reached\n", k, dispatchers)
	}
	fmt.Printf("[river] latency: %d jobs at %d/s (%.0f/s achieved, %d dispatchers) over %.2fs; p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (%d samples after %s warm-up)\n",
		n, rate, dispatched, dispatchers, secs, ps[0], ps[1], ps[2], samples, latencyWarmup)
	return result{
		Jobs: n, Seconds: round(secs, 3), JobsPerSec: round(achieved, 1),
		P50Ms: ptr(round(ps[0], 3)), P95Ms: ptr(round(ps[1], 3)), P99Ms: ptr(round(ps[2], 3)),
		Rate: rate, Dispatchers: dispatchers, DispatchedPerSec: round(dispatched, 1),
	}, nil
}
