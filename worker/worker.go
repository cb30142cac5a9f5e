// Package worker runs jobs: it claims them from a queue.Source in batches,
// runs each task's Handle under its timeout, retries and fails them as their
// configuration says, writes outcomes back in batches, renews leases while
// jobs run, rescues jobs whose worker died, and shuts down gracefully.
//
// A worker runs beside the application, in the same process:
//
//	w, err := worker.New(adapter, reg, worker.Config{Queues: []string{"high", "default"}, Concurrency: 20})
//	go w.Run(ctx) // returns after ctx is cancelled and running jobs are finished or handed back
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// Worker claims and runs jobs. Create one with New and start it with Run.
type Worker struct {
	src queue.Source
	reg *queue.Registry
	cfg Config
	log *slog.Logger

	slots     chan struct{} // one token per running job
	blocking  chan struct{} // one token per running Blocking job
	slotFreed chan struct{}
	wake      chan struct{}

	ready     chan claimed    // claimed jobs waiting for an executor
	jobCtx    context.Context // parent of every job's context
	executors int             // executors started; only the fetch loop touches it
	idle      atomic.Int64    // executors waiting for a job
	mu        sync.Mutex
	running   map[uuid.UUID]*queue.Job

	jobs      sync.WaitGroup
	outMu     sync.RWMutex // guards outClosed against sends racing the close
	outClosed bool
	outcomes  chan queue.Outcome
	completed chan struct{} // closed when the completer has flushed everything
	stopping  atomic.Bool   // set when job contexts are cancelled at the hard stop
	started   atomic.Bool

	claimed atomic.Int64
	stats   counters
}

type counters struct {
	completed, retried, failed, cancelled, handedBack, stale atomic.Int64
}

// Stats is a snapshot of what a worker has done since it started.
type Stats struct {
	Claimed    int64 // jobs claimed
	Running    int   // jobs running now
	Completed  int64 // attempts that succeeded
	Retried    int64 // attempts that failed and were scheduled to run again
	Failed     int64 // jobs that failed for good
	Cancelled  int64 // jobs cancelled by their task
	HandedBack int64 // jobs returned unfinished (shutdown, busy blocking pool)
	Stale      int64 // outcomes discarded because the attempt no longer held the job
}

// New returns a worker that claims jobs from src and runs them with the task
// types in reg. src is usually an adapter such as adapters/postgres.
func New(src queue.Source, reg *queue.Registry, cfg Config) (*Worker, error) {
	if src == nil {
		return nil, errors.New("worker: New needs a queue.Source (an adapter such as postgres.New)")
	}
	if reg == nil {
		return nil, errors.New("worker: New needs a *queue.Registry with the task types to run")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Worker{
		src: src, reg: reg, cfg: cfg,
		log:       cfg.Logger.With("worker", cfg.ID),
		slots:     make(chan struct{}, cfg.Concurrency),
		blocking:  make(chan struct{}, cfg.BlockingConcurrency),
		slotFreed: make(chan struct{}, 1),
		wake:      make(chan struct{}, 1),
		running:   map[uuid.UUID]*queue.Job{},
		ready:     make(chan claimed, cfg.Concurrency),
		outcomes:  make(chan queue.Outcome, cfg.Concurrency*2),
		completed: make(chan struct{}),
	}, nil
}

// ID returns the worker's ID, as stored in attempted_by.
func (w *Worker) ID() string { return w.cfg.ID }

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	n := len(w.running)
	w.mu.Unlock()
	return Stats{
		Claimed: w.claimed.Load(), Running: n,
		Completed: w.stats.completed.Load(), Retried: w.stats.retried.Load(), Failed: w.stats.failed.Load(),
		Cancelled: w.stats.cancelled.Load(), HandedBack: w.stats.handedBack.Load(), Stale: w.stats.stale.Load(),
	}
}

// Run claims and runs jobs until ctx is cancelled (or MaxTasks jobs are
// done), then shuts down gracefully: it stops claiming, lets running jobs
// finish for up to ShutdownGrace, cancels the contexts of those still
// running and hands them back to the queue unfinished, and writes every
// outcome before returning. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice; create a new Worker")
	}
	// Background work (writing outcomes, renewing leases) must outlive ctx:
	// it is stopped explicitly once the jobs are finished.
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()

	w.log.Info("worker starting", "queues", w.cfg.Queues, "concurrency", w.cfg.Concurrency)
	var completers sync.WaitGroup
	for range completerCount {
		completers.Go(func() { w.completer(bg) })
	}
	go func() { completers.Wait(); close(w.completed) }()
	var loops sync.WaitGroup
	loops.Go(func() { w.heartbeat(bg) })
	maintCtx, stopMaint := context.WithCancel(bg)
	loops.Go(func() { w.maintain(maintCtx) })
	if n, ok := w.src.(queue.Notifier); ok {
		if ch, err := n.Subscribe(maintCtx); err != nil {
			w.log.Warn("cannot listen for notifications; polling only", "err", err, "poll_interval", w.cfg.PollInterval)
		} else {
			loops.Go(func() { w.forwardWakeups(ch) })
		}
	}

	w.jobCtx = jobCtx
	w.fetchLoop(ctx, bg)
	close(w.ready)
	stopMaint()

	// Graceful shutdown: let running jobs finish, then cancel them.
	if !w.waitJobs(w.cfg.ShutdownGrace) {
		w.log.Warn("shutdown grace period over; cancelling running jobs", "running", w.Stats().Running, "grace", w.cfg.ShutdownGrace)
		w.stopping.Store(true)
		cancelJobs()
		if !w.waitJobs(5 * time.Second) {
			w.handBackAbandoned()
		}
	}
	w.outMu.Lock() // no send is in flight once this is held
	w.outClosed = true
	close(w.outcomes)
	w.outMu.Unlock()
	<-w.completed
	stopBg()
	loops.Wait()
	s := w.Stats()
	w.log.Info("worker stopped", "claimed", s.Claimed, "completed", s.Completed, "failed", s.Failed, "handed_back", s.HandedBack)
	return nil
}

func (w *Worker) waitJobs(d time.Duration) bool {
	done := make(chan struct{})
	go func() { w.jobs.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// handBackAbandoned returns jobs whose Handle ignored cancellation. Their
// goroutines may still finish later; the completion guard then discards
// their outcomes.
func (w *Worker) handBackAbandoned() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, j := range w.running {
		w.log.Error("job ignored cancellation; handing it back while its Handle still runs", "job_id", id, "kind", j.Kind)
		w.send(queue.Outcome{ID: id, Attempt: j.Attempt, State: queue.StateAvailable})
		w.stats.handedBack.Add(1)
		delete(w.running, id)
	}
}

func (w *Worker) forwardWakeups(ch <-chan string) {
	for q := range ch {
		if q == "" || w.serves(q) {
			w.poke(w.wake)
		}
	}
}

func (w *Worker) serves(q string) bool {
	for _, s := range w.cfg.Queues {
		if s == q {
			return true
		}
	}
	return false
}

func (w *Worker) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (w *Worker) fetchLoop(ctx, bg context.Context) {
	poll := time.NewTicker(w.cfg.PollInterval)
	defer poll.Stop()
	backlog := true // look for work at once on start
	var lastFetch time.Time
	for {
		if w.cfg.MaxTasks > 0 && w.claimed.Load() >= int64(w.cfg.MaxTasks) {
			return
		}
		if !backlog {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			case <-poll.C:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			default:
			}
		}
		if wait := w.cfg.FetchCooldown - time.Since(lastFetch); wait > 0 {
			time.Sleep(wait)
		}
		free := cap(w.slots) - len(w.slots)
		if w.cfg.MaxTasks > 0 {
			free = min(free, w.cfg.MaxTasks-int(w.claimed.Load()))
		}
		if free <= 0 {
			// Full: wait for a slot, a stop, or the poll tick.
			select {
			case <-ctx.Done():
				return
			case <-w.slotFreed:
			case <-poll.C:
			}
			backlog = true
			continue
		}
		lastFetch = time.Now()
		backlog = false
		for _, q := range w.cfg.Queues {
			// The claim runs on bg, not ctx: a claim cancelled halfway could
			// commit server-side and lose its rows until their leases expire.
			claimCtx, cancel := context.WithTimeout(bg, 30*time.Second)
			jobs, err := w.src.Claim(claimCtx, q, w.cfg.ID, free, w.cfg.LeaseDuration)
			cancel()
			if err != nil {
				w.log.Error("claim failed", "queue", q, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(w.cfg.PollInterval):
				}
				break
			}
			for _, j := range jobs {
				w.start(j)
			}
			free -= len(jobs)
			if free == 0 {
				backlog = true
				break
			}
		}
	}
}

// claimed is a job on its way to an executor, decoded already.
type claimed struct {
	job *queue.Job
	x   *queue.Execution
	err error // why the job cannot run (unknown kind, undecodable payload)
}

// start hands a claimed job to an executor. The payload is decoded here, on
// the fetch loop's goroutine, whose stack has grown to fit the decoder once:
// decoding on 2000 executors' small stacks costs a stack copy per job.
func (w *Worker) start(j *queue.Job) {
	w.slots <- struct{}{}
	w.claimed.Add(1)
	w.mu.Lock()
	w.running[j.ID] = j
	w.mu.Unlock()
	w.jobs.Add(1)
	meta := queue.Metadata{ID: j.ID, Attempt: j.Attempt - 1, DispatchedAt: j.DispatchedAt, Kind: j.Kind, Queue: j.Queue, MaxRetries: j.MaxRetries}
	x, err := w.reg.Prepare(j.Kind, j.Payload, meta)
	w.ready <- claimed{job: j, x: x, err: err}
	// Start an executor when more jobs wait than executors are idle; the pool
	// grows to Concurrency only if the jobs keep that many busy. Fast jobs
	// need a few, and fewer goroutine stacks make every GC cycle cheaper.
	if len(w.ready) > int(w.idle.Load()) && w.executors < w.cfg.Concurrency {
		w.executors++
		go w.executor(w.jobCtx)
	}
}

// executor runs claimed jobs one after another until the fetch loop ends.
// Executors live as long as the worker, so a job costs no goroutine start.
func (w *Worker) executor(jobCtx context.Context) {
	for {
		w.idle.Add(1)
		c, ok := <-w.ready
		w.idle.Add(-1)
		if !ok {
			return
		}
		j := c.job
		o, ok := w.execute(jobCtx, c)
		w.mu.Lock()
		_, still := w.running[j.ID]
		delete(w.running, j.ID)
		w.mu.Unlock()
		if ok && still {
			w.send(o)
		}
		<-w.slots
		w.poke(w.slotFreed)
		w.jobs.Done()
	}
}

func (w *Worker) send(o queue.Outcome) {
	w.outMu.RLock()
	defer w.outMu.RUnlock()
	if w.outClosed {
		// A Handle abandoned at shutdown returned after all: its job was
		// handed back already, so the outcome has nowhere to go.
		return
	}
	switch o.State {
	case queue.StateCompleted:
		w.stats.completed.Add(1)
	case queue.StateRetryable:
		w.stats.retried.Add(1)
	case queue.StateFailed:
		w.stats.failed.Add(1)
	case queue.StateCancelled:
		w.stats.cancelled.Add(1)
	}
	w.outcomes <- o
}

type handleResult struct {
	result []byte
	err    error
}

// attempt resolves the task's references and runs Handle, turning a panic
// into an error wrapping queue.ErrPanic.
func (w *Worker) attempt(ctx context.Context, x *queue.Execution) (r handleResult) {
	defer func() {
		if p := recover(); p != nil {
			r = handleResult{err: fmt.Errorf("%w: %v\n%s", queue.ErrPanic, p, debug.Stack())}
		}
	}()
	if w.cfg.Resolver != nil {
		if err := w.cfg.Resolver.Resolve(ctx, x.Task(), x.Payload()); err != nil {
			return handleResult{err: err}
		}
	}
	res, err := x.Handle(ctx)
	return handleResult{res, err}
}

// execute runs one attempt and decides its outcome. ok is false when there
// is nothing to write.
func (w *Worker) execute(jobCtx context.Context, c claimed) (o queue.Outcome, ok bool) {
	j, x, err := c.job, c.x, c.err
	o = queue.Outcome{ID: j.ID, Attempt: j.Attempt}
	log := jobLogger{w.log, j}
	if err != nil {
		// Bad input: this one job fails with the reason; the worker goes on.
		log.Error("job cannot run; marking it failed", "err", err)
		o.State, o.Error = queue.StateFailed, err.Error()
		return o, true
	}
	if j.Attempt > j.MaxRetries+1 {
		// The last attempt was lost with its worker; nothing is left to try.
		err := fmt.Errorf("%w: the last of %d attempts did not finish", queue.ErrLeaseExpired, j.MaxRetries+1)
		w.runFailed(jobCtx, x, err, log)
		o.State, o.Error, o.Attempt = queue.StateFailed, err.Error(), j.Attempt
		return o, true
	}
	if x.Config.Blocking {
		select {
		case w.blocking <- struct{}{}:
			defer func() { <-w.blocking }()
		default:
			// The blocking pool is full: hand the job back rather than hold a
			// slot the other tasks could use.
			w.stats.handedBack.Add(1)
			o.State, o.Delay = queue.StateScheduled, 500*time.Millisecond
			return o, true
		}
	}

	hctx := jobCtx
	var r handleResult
	if j.Timeout <= 0 {
		r = w.attempt(hctx, x) // no deadline to enforce: run it on this goroutine
	} else {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(jobCtx, j.Timeout)
		defer cancel()
		done := make(chan handleResult, 1)
		go func() { done <- w.attempt(hctx, x) }()
		select {
		case r = <-done:
		case <-hctx.Done():
			select {
			case r = <-done: // it returned at the same moment
			default:
				r.err = hctx.Err() // Handle ignores its context; leave it behind
			}
		}
	}

	switch {
	case r.err == nil:
		o.State, o.Result = queue.StateCompleted, r.result
		return o, true
	case w.stopping.Load() && jobCtx.Err() != nil:
		// Cancelled by shutdown: hand back; the attempt does not count.
		log.Warn("job interrupted by shutdown; handing it back")
		w.stats.handedBack.Add(1)
		o.State = queue.StateAvailable
		return o, true
	}
	err = r.err
	if j.Timeout > 0 && errors.Is(hctx.Err(), context.DeadlineExceeded) && jobCtx.Err() == nil {
		err = fmt.Errorf("%w after %v: %w", queue.ErrTimeout, j.Timeout, r.err)
	}
	var ce *queue.CancelError
	if errors.As(err, &ce) {
		log.Info("job cancelled by its task", "err", err)
		o.State, o.Error = queue.StateCancelled, err.Error()
		return o, true
	}
	o.Error = err.Error()
	if j.Attempt <= j.MaxRetries && w.shouldRetry(x, err, log) {
		log.Warn("attempt failed; will retry", "err", err, "retry_in", j.RetryDelay)
		o.State, o.Delay = queue.StateRetryable, j.RetryDelay
		return o, true
	}
	log.Error("job failed", "err", err)
	w.runFailed(jobCtx, x, err, log)
	o.State = queue.StateFailed
	return o, true
}

// jobLogger logs with a job's attributes, built only when something is logged
// (the hot path logs nothing).
type jobLogger struct {
	l *slog.Logger
	j *queue.Job
}

func (jl jobLogger) log(level slog.Level, msg string, args ...any) {
	if !jl.l.Enabled(context.Background(), level) {
		return
	}
	args = append(args, "job_id", jl.j.ID, "kind", jl.j.Kind, "queue", jl.j.Queue, "attempt", jl.j.Attempt)
	jl.l.Log(context.Background(), level, msg, args...)
}

func (jl jobLogger) Error(msg string, args ...any) { jl.log(slog.LevelError, msg, args...) }
func (jl jobLogger) Warn(msg string, args ...any)  { jl.log(slog.LevelWarn, msg, args...) }
func (jl jobLogger) Info(msg string, args ...any)  { jl.log(slog.LevelInfo, msg, args...) }

func (w *Worker) shouldRetry(x *queue.Execution, err error, log jobLogger) (retry bool) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("ShouldRetry panicked; retrying", "panic", r)
			retry = true
		}
	}()
	return x.ShouldRetry(err)
}

func (w *Worker) runFailed(jobCtx context.Context, x *queue.Execution, err error, log jobLogger) {
	ctx, cancel := context.WithTimeout(jobCtx, w.cfg.FailedHookTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			log.Error("Failed hook panicked", "panic", r)
		}
	}()
	x.Failed(ctx, err)
}

// completerCount is how many batches of outcomes may be in flight at once:
// while one commit waits for the disk, the next batch is being written.
const completerCount = 2

// completer writes outcomes in batches: whatever has queued up while the
// previous batch was being written goes in the next statement.
func (w *Worker) completer(bg context.Context) {
	batch := make([]queue.Outcome, 0, w.cfg.CompletionBatchSize)
	for o := range w.outcomes {
		batch = append(batch[:0], o)
	drain:
		for len(batch) < w.cfg.CompletionBatchSize {
			select {
			case o, ok := <-w.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		w.flush(bg, batch)
	}
}

func (w *Worker) flush(bg context.Context, batch []queue.Outcome) {
	backoff := 50 * time.Millisecond
	giveUp := time.Now().Add(w.cfg.LeaseDuration)
	for {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		n, err := w.src.Finish(ctx, w.cfg.ID, batch)
		cancel()
		if err == nil {
			if stale := len(batch) - n; stale > 0 {
				w.stats.stale.Add(int64(stale))
				w.log.Warn("discarded outcomes of attempts that no longer hold their jobs (lease expired, or cancelled by an operator)", "count", stale)
			}
			return
		}
		if time.Now().After(giveUp) || bg.Err() != nil {
			// The leases run out now; the jobs will be rescued and run again.
			w.log.Error("cannot write job outcomes; giving up, their jobs will run again after their leases expire", "count", len(batch), "err", err)
			return
		}
		w.log.Error("cannot write job outcomes; retrying", "count", len(batch), "err", err, "retry_in", backoff)
		time.Sleep(backoff)
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (w *Worker) heartbeat(bg context.Context) {
	t := time.NewTicker(w.cfg.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-bg.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		ids := make([]uuid.UUID, 0, len(w.running))
		for id := range w.running {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(bg, w.cfg.LeaseDuration/3)
		if err := w.src.ExtendLeases(ctx, w.cfg.ID, ids, w.cfg.LeaseDuration); err != nil && bg.Err() == nil {
			w.log.Error("cannot renew leases", "jobs", len(ids), "err", err)
		}
		cancel()
	}
}

func (w *Worker) maintain(ctx context.Context) {
	t := time.NewTicker(w.cfg.MaintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		promoted, rescued, err := w.src.Maintain(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("maintenance failed", "err", err)
			}
			continue
		}
		if rescued > 0 {
			w.log.Warn("rescued jobs whose lease expired", "count", rescued)
		}
		if promoted+rescued > 0 {
			w.poke(w.wake)
		}
	}
}
