// Package worker runs jobs: it claims them from a queue.Source in batches,
// runs each task's Handle under its timeout, retries and fails them as the
// lifecycle rules in package queue say, writes outcomes back in batches,
// renews leases while jobs run and until their outcomes are written, and
// shuts down gracefully.
//
// A worker runs beside the application, in the same process:
//
//	w, err := worker.New(adapter, reg, worker.Config{Queues: []string{"high", "default"}, Concurrency: 20})
//	go w.Run(ctx) // returns after ctx is cancelled and running jobs are finished or handed back
//
// The worker is made of parts, each in its own file: the fetcher claims
// (fetch.go), executors run Handle (execute.go), completers write outcomes
// (complete.go), the heartbeat renews leases (heartbeat.go), and the
// maintainer promotes and rescues (maintain.go). The executions table
// (executions.go) is what they share: every execution is keyed by its job's
// ID and claim token, so two executions of one job never mix.
package worker

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// Worker claims and runs jobs. Create one with New and start it with Run.
type Worker struct {
	src queue.Source
	txc queue.TxCompleter // src, when it can complete jobs in a handler's transaction (CompleteTx)
	reg *queue.Registry
	cfg Config
	log *slog.Logger

	execs     *executions
	slotFreed chan struct{} // poked when a slot frees up
	wake      chan struct{} // poked by notifications and maintenance

	ready  chan claimed    // claimed jobs waiting for an executor
	jobCtx context.Context // parent of every job's context: ctx's values, never cancelled
	pool   pool            // how many executors run (pool.go)
	idle   atomic.Int64    // executors waiting for a job
	jobs   sync.WaitGroup  // one per execution whose Handle has not returned

	outMu     sync.RWMutex // guards outClosed against sends racing the close
	outClosed bool
	outcomes  chan queue.Outcome
	completed chan struct{} // closed when the completers have written everything
	flushBy   atomic.Int64  // unix nanos after which a completer gives up; 0 while running
	stopping  atomic.Bool   // set when job contexts are cancelled at the hard stop
	started   atomic.Bool
	fatal     atomic.Pointer[error] // an error that stops the worker, returned by Run

	claimed atomic.Int64
	stats   counters
	info    queue.WorkerInfo // as registered with a queue.WorkerRegistry

	leader      atomic.Bool  // this worker leads maintenance now
	leaderSince atomic.Value // time.Time of the last successful TryLead
}

type counters struct {
	completed, retried, failed, cancelled, handedBack, snoozed, stale, dropped, lost, stuck atomic.Int64
	maintenance, purged, rescued, promoted                                                  atomic.Int64
}

// Stats is a snapshot of what a worker has done since it started.
type Stats struct {
	Claimed    int64 // jobs claimed
	Running    int   // executions whose Handle is running now
	Pending    int   // outcomes waiting to be written
	Completed  int64 // attempts that succeeded
	Retried    int64 // attempts that failed and were scheduled to run again
	Failed     int64 // jobs that failed for good
	Cancelled  int64 // jobs cancelled by their task
	HandedBack int64 // jobs returned unfinished (shutdown, another execution still running here)
	Snoozed    int64 // attempts whose task returned queue.Snooze: rescheduled, not counted
	Stale      int64 // outcomes the backend refused because the execution no longer held the job
	Dropped    int64 // outcomes given up on at shutdown because the backend could not be reached
	LostLeases int64 // executions told by the backend (lease renewal, cancel notice) that their claim was lost
	// Stuck is how many executions are running past their timeout now: their
	// Handle ignores its context. Each keeps its slot until it returns.
	Stuck int64
	// Leader says whether this worker leads maintenance now (on backends
	// that elect a leader; elsewhere every worker maintains).
	Leader bool
	// MaintenanceRuns counts the maintenance passes this worker ran.
	MaintenanceRuns int64
	// Purged counts finished jobs this worker's retention removed.
	Purged int64
	// Rescued counts running jobs whose lease had expired (their worker
	// died, froze or lost the database) that this worker's maintenance
	// handed back, to run again.
	Rescued int64
	// Promoted counts scheduled and retryable jobs this worker's
	// maintenance made available when they came due.
	Promoted int64
}

// asTxCompleter returns src as a queue.TxCompleter, or nil.
func asTxCompleter(src queue.Source) queue.TxCompleter {
	tc, _ := src.(queue.TxCompleter)
	return tc
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
	w := &Worker{
		src: src, reg: reg, cfg: cfg,
		txc:       asTxCompleter(src),
		log:       cfg.Logger.With("worker", cfg.ID),
		execs:     newExecutions(cfg.Concurrency),
		slotFreed: make(chan struct{}, 1),
		wake:      make(chan struct{}, 1),
		ready:     make(chan claimed, cfg.Concurrency),
		pool:      pool{floor: poolFloor(cfg.Concurrency), max: cfg.Concurrency},
		outcomes:  make(chan queue.Outcome, cfg.Concurrency*2),
		completed: make(chan struct{}),
	}
	w.leaderSince.Store(time.Time{})
	return w, nil
}

// ID returns the worker's ID, as stored in attempted_by.
func (w *Worker) ID() string { return w.cfg.ID }

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() Stats {
	running, pending := w.execs.counts()
	return Stats{
		Claimed: w.claimed.Load(), Running: running, Pending: pending,
		Completed: w.stats.completed.Load(), Retried: w.stats.retried.Load(), Failed: w.stats.failed.Load(),
		Cancelled: w.stats.cancelled.Load(), HandedBack: w.stats.handedBack.Load(), Snoozed: w.stats.snoozed.Load(), Stale: w.stats.stale.Load(),
		Dropped: w.stats.dropped.Load(), LostLeases: w.stats.lost.Load(), Stuck: w.stats.stuck.Load(),
		Leader: w.leader.Load(), MaintenanceRuns: w.stats.maintenance.Load(), Purged: w.stats.purged.Load(),
		Rescued: w.stats.rescued.Load(), Promoted: w.stats.promoted.Load(),
	}
}

// Run claims and runs jobs until ctx is cancelled (or MaxTasks jobs are
// claimed and done), then shuts down gracefully: it stops claiming, lets
// running jobs finish for up to ShutdownGrace, cancels the contexts of those
// still running and hands them back unfinished, and writes every outcome it
// can before returning. A batch run (MaxTasks) waits for its jobs as long as
// they take, unless ctx is cancelled.
//
// Run returns nil after a shutdown, or the error that stopped the worker
// when it cannot go on (the schema is missing: queue.ErrNotMigrated). A
// Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice; create a new Worker")
	}
	kinds := w.reg.Kinds()
	if len(kinds) == 0 {
		return errors.New("worker: the registry holds no task types; register them with queue.Register before Run")
	}
	// Background work (writing outcomes, renewing leases) must outlive ctx:
	// it is stopped explicitly once the outcomes are written.
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	// Job contexts carry ctx's values but not its cancellation: a shutdown
	// cancels them one by one (executions.cancelAll) after the grace period.
	// Not deriving them from one cancellable parent keeps thousands of
	// executors from contending on that parent's lock for every job.
	jobCtx := context.WithoutCancel(ctx)
	// fetchCtx ends the fetch loop: on ctx, or when the worker must stop.
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()

	host, _ := os.Hostname()
	w.info = queue.WorkerInfo{ID: w.cfg.ID, Queues: w.cfg.Queues, Kinds: kinds, Host: host, PID: os.Getpid()}
	w.register(bg)
	defer w.unregister(ctx)
	w.log.InfoContext(ctx, "worker starting", "queues", w.cfg.Queues, "concurrency", w.cfg.Concurrency, "kinds", len(kinds))
	var completers sync.WaitGroup
	turn := make(chan struct{}, 1)
	for range completerCount {
		completers.Go(func() { w.completer(bg, turn) })
	}
	go func() { completers.Wait(); close(w.completed) }()
	var loops sync.WaitGroup
	loops.Go(func() { w.heartbeat(bg) })
	maintCtx, stopMaint := context.WithCancel(bg)
	loops.Go(func() { w.maintain(maintCtx) })
	w.startCron(maintCtx, &loops)
	if n, ok := w.src.(queue.Notifier); ok {
		// Until the outcomes are written: running jobs can be cancelled
		// during the shutdown's grace period too.
		loops.Go(func() { w.listen(bg, n) })
	}

	w.jobCtx = jobCtx
	w.fetchLoop(fetchCtx, stopFetch, bg, newKindSplit(w.reg, kinds))
	close(w.ready)
	stopMaint()

	if ctx.Err() == nil && w.fatal.Load() == nil && w.cfg.MaxTasks > 0 {
		// A batch run ends when its jobs are done, however long they take,
		// unless it is cancelled meanwhile.
		w.waitJobsOr(ctx)
	}
	// From here on a completer that cannot reach the backend gives up at a
	// fixed time (a lease after the last job can have ended), so that an
	// unreachable database cannot hold the shutdown for ever.
	w.flushBy.Store(time.Now().Add(w.cfg.ShutdownGrace + w.cfg.LeaseDuration).UnixNano())
	// Graceful shutdown: let running jobs finish, then cancel them.
	if !w.waitJobs(w.cfg.ShutdownGrace) {
		running, _ := w.execs.counts()
		w.log.WarnContext(ctx, "shutdown grace period over; cancelling running jobs", "running", running, "grace", w.cfg.ShutdownGrace)
		w.stopping.Store(true)
		w.flushBy.Add(int64(handBackWait))
		w.execs.cancelAll(errShutdown)
		if !w.waitJobs(handBackWait) {
			w.handBackAbandoned(ctx)
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
	w.log.InfoContext(ctx, "worker stopped", "claimed", s.Claimed, "completed", s.Completed, "failed", s.Failed,
		"handed_back", s.HandedBack, "stale", s.Stale, "dropped", s.Dropped)
	if errp := w.fatal.Load(); errp != nil {
		return *errp
	}
	return nil
}

// handBackWait is how long a shutdown waits for Handles whose context it
// cancelled before handing their jobs back while they still run.
const handBackWait = 5 * time.Second

var errShutdown = errors.New("worker shutting down")

// stop makes Run return err once it has shut down.
func (w *Worker) stop(err error) {
	w.fatal.CompareAndSwap(nil, &err)
}

func (w *Worker) waitJobs(d time.Duration) bool {
	done := make(chan struct{})
	go func() { w.jobs.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (w *Worker) waitJobsOr(ctx context.Context) {
	done := make(chan struct{})
	go func() { w.jobs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// handBackAbandoned returns jobs whose Handle ignored cancellation at
// shutdown. Their goroutines may still finish later; their outcomes then
// have nowhere to go, and the backend's guard would refuse them anyway.
func (w *Worker) handBackAbandoned(ctx context.Context) {
	for _, x := range w.execs.abandonRunning() {
		w.log.ErrorContext(ctx, "job ignored cancellation; handing it back while its Handle still runs", "job_id", x.job.ID, "kind", x.job.Kind)
		w.stats.handedBack.Add(1)
		w.sendLocked(queue.HandBack(x.job, 0))
	}
}

func (w *Worker) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// send queues an outcome for the completers and counts it.
func (w *Worker) send(o queue.Outcome) {
	w.outMu.RLock()
	defer w.outMu.RUnlock()
	if w.outClosed {
		// A Handle abandoned at shutdown returned after all: its job was
		// handed back already, so the outcome has nowhere to go.
		w.execs.settle(o)
		return
	}
	w.count(o)
	w.outcomes <- o
}

// sendLocked is send for callers that run before the close; it never blocks
// on the lock the close holds.
func (w *Worker) sendLocked(o queue.Outcome) {
	w.count(o)
	w.outcomes <- o
}

func (w *Worker) count(o queue.Outcome) {
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
}

// jobLogger logs with a job's attributes, built only when something is logged
// (the hot path logs nothing).
type jobLogger struct {
	l   *slog.Logger
	ctx context.Context
	j   *queue.Job
}

func (jl jobLogger) log(level slog.Level, msg string, args ...any) {
	if !jl.l.Enabled(jl.ctx, level) {
		return
	}
	args = append(args, "job_id", jl.j.ID, "kind", jl.j.Kind, "queue", jl.j.Queue, "attempt", jl.j.Attempt, "token", jl.j.Token)
	jl.l.Log(jl.ctx, level, msg, args...)
}

func (jl jobLogger) Error(msg string, args ...any) { jl.log(slog.LevelError, msg, args...) }
func (jl jobLogger) Warn(msg string, args ...any)  { jl.log(slog.LevelWarn, msg, args...) }
func (jl jobLogger) Info(msg string, args ...any)  { jl.log(slog.LevelInfo, msg, args...) }
func (jl jobLogger) Debug(msg string, args ...any) { jl.log(slog.LevelDebug, msg, args...) }

// errText is queue.ErrorText for log attributes.
func errText(err error) string { return queue.ErrorText(err) }

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
