package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// These tests drive the worker's parts against memSource, with faults
// injected, and wait on conditions with a deadline.

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs w until the returned stop is called; stop returns Run's error.
func start(t *testing.T, src queue.Source, reg *queue.Registry, cfg Config) (*Worker, func() error) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	w, err := New(src, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return within 30s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return w, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func stateIs(m *memSource, id uuid.UUID, st queue.JobState) func() bool {
	return func() bool { return m.snapshot(id).state == st }
}

// gate is a task whose executions block until released (or their context
// ends, when honour is set), counting how many run at once.
type gate struct {
	release chan struct{}
	running atomic.Int64
	peak    atomic.Int64
	runs    atomic.Int64
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) enter() {
	g.runs.Add(1)
	n := g.running.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
}

func (g *gate) open() { close(g.release) }

type gateArgs struct{ N int }

func gateFunc(g *gate, honour bool, cfg queue.Config) *queue.Func[gateArgs, int] {
	return queue.NewFunc("gate", cfg, func(ctx context.Context, a gateArgs) (int, error) {
		g.enter()
		defer g.running.Add(-1)
		if honour {
			select {
			case <-g.release:
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		} else {
			<-g.release
		}
		return a.N, ctx.Err()
	})
}

// Defect 1, same worker: the worker's own lease expires while Handle runs and
// the job is rescued and claimed again by the same worker. The second claim
// must not start a second execution, the old execution must not finish the
// job, and the job must end completed by a later execution.
func TestReclaimBySameWorkerNeverCrossesExecutions(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	var runs atomic.Int64
	var concurrent, peak atomic.Int64
	firstStarted := make(chan struct{})
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, queue.NewFunc("long", queue.Config{}, func(ctx context.Context, a gateArgs) (string, error) {
		n := runs.Add(1)
		c := concurrent.Add(1)
		defer concurrent.Add(-1)
		if c > peak.Load() {
			peak.Store(c)
		}
		if n == 1 {
			close(firstStarted)
			<-ctx.Done() // the first execution runs until the worker learns its claim is lost
			return "first", nil
		}
		return fmt.Sprintf("run %d", n), nil
	})); err != nil {
		t.Fatal(err)
	}
	id := src.add("long", gateArgs{}, 3)
	w, _ := start(t, src, reg, Config{Concurrency: 4, LeaseDuration: 150 * time.Millisecond})
	<-firstStarted
	src.rescue(id) // the lease ran out (a database outage, a paused process) and maintenance moved the job back
	waitFor(t, "job completed", stateIs(src, id, queue.StateCompleted))
	j := src.snapshot(id)
	if string(j.result) == `"first"` {
		t.Fatalf("the execution that lost its claim finished the job: result %s", j.result)
	}
	if peak.Load() != 1 {
		t.Errorf("peak concurrent executions of one job = %d, want 1", peak.Load())
	}
	if s := w.Stats(); s.LostLeases < 1 {
		t.Errorf("stats %+v: want the lost claim counted", s)
	}
}

// Defect 1, operator cancel: the heartbeat learns the claim is gone and
// cancels the running Handle's context; its outcome is never written.
func TestLostClaimCancelsHandle(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	g := newGate()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &ctxTask{})
	ctxTaskGate = g
	id := src.add("ctxTask", ctxTask{}, 3)
	w, _ := start(t, src, reg, Config{LeaseDuration: 150 * time.Millisecond})
	waitFor(t, "Handle running", func() bool { return g.running.Load() == 1 })
	src.cancelJob(id)
	waitFor(t, "Handle cancelled", func() bool { return g.running.Load() == 0 })
	waitFor(t, "lost lease counted", func() bool { return w.Stats().LostLeases == 1 })
	if j := src.snapshot(id); j.state != queue.StateCancelled || len(j.errors) != 0 {
		t.Errorf("job %s errors %v: want cancelled by the operator, untouched by the worker", j.state, j.errors)
	}
	if cause := ctxTaskCause.Load(); cause == nil || !errors.Is(*cause, errLeaseLost) {
		t.Errorf("Handle's context cause = %v, want errLeaseLost", cause)
	}
}

var (
	ctxTaskGate  *gate
	ctxTaskCause atomic.Pointer[error]
)

type ctxTask struct{}

func (ctxTask) Kind() string { return "ctxTask" }

func (*ctxTask) Handle(ctx context.Context) (int, error) {
	ctxTaskGate.enter()
	defer ctxTaskGate.running.Add(-1)
	<-ctx.Done()
	c := context.Cause(ctx)
	ctxTaskCause.Store(&c)
	return 0, c
}

// Defect 3: while Finish fails, the outcome is kept and its lease renewed,
// and it is written once the backend is back.
func TestPendingOutcomesKeepTheirLeases(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.finishFail = 6 // 50+100+200+400+800+1600 ms of failures: longer than the lease
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	id := src.add("okTask", okTask{N: 2}, 3)
	w, _ := start(t, src, reg, Config{LeaseDuration: 300 * time.Millisecond})
	waitFor(t, "job completed", stateIs(src, id, queue.StateCompleted))
	src.mu.Lock()
	renewedWhilePending := 0
	for _, ls := range src.extended {
		for _, l := range ls {
			if l.ID == id {
				renewedWhilePending++
			}
		}
	}
	src.mu.Unlock()
	if renewedWhilePending < 3 {
		t.Errorf("the pending outcome's lease was renewed %d times during ~3s of Finish failures, want several", renewedWhilePending)
	}
	if s := w.Stats(); s.Dropped != 0 || s.Completed != 1 {
		t.Errorf("stats %+v: want 1 completed, none dropped", s)
	}
}

type okTask struct{ N int }

func (okTask) Kind() string { return "okTask" }

func (t *okTask) Handle(ctx context.Context) (int, error) { return t.N * 2, nil }

// Defect 4: no user value crashes the worker.
type nastyTask struct{ Mode string }

func (nastyTask) Kind() string { return "nasty" }

type panickyError struct{}

func (panickyError) Error() string { panic("Error() exploded") }

type panickyResult struct{}

func (panickyResult) MarshalJSON() ([]byte, error) { panic("MarshalJSON exploded") }

func (t *nastyTask) Handle(ctx context.Context) (any, error) {
	switch t.Mode {
	case "permanent-nil":
		return nil, queue.Permanent(nil)
	case "panicky-error":
		return nil, panickyError{}
	case "typed-nil-permanent":
		var p *queue.PermanentError
		return nil, p
	case "panic":
		panic("Handle exploded")
	case "panicky-result":
		return panickyResult{}, nil
	case "nul-result":
		return map[string]string{"s": "a\x00b"}, nil
	case "bad-error-text":
		return nil, queue.Permanent(errors.New("nul \x00 and invalid \xff utf8"))
	}
	return "ok", nil
}

func (t *nastyTask) ShouldRetry(err error) bool {
	if t.Mode == "panicky-should-retry" {
		panic("ShouldRetry exploded")
	}
	return !queue.IsPermanent(err)
}

func TestUserValuesCannotCrashTheWorker(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &nastyTask{})
	modes := []string{"permanent-nil", "panicky-error", "typed-nil-permanent", "panic", "panicky-result", "nul-result", "bad-error-text"}
	ids := map[string]uuid.UUID{}
	for _, m := range modes {
		ids[m] = src.add("nasty", nastyTask{Mode: m}, queue.NoRetries+1)
	}
	good := src.add("nasty", nastyTask{Mode: "fine"}, 0)
	_, stop := start(t, src, reg, Config{Concurrency: 3})
	waitFor(t, "good job completed", stateIs(src, good, queue.StateCompleted))
	for _, m := range modes {
		waitFor(t, m+" failed", stateIs(src, ids[m], queue.StateFailed))
		j := src.snapshot(ids[m])
		if len(j.errors) == 0 || j.errors[0] == "" {
			t.Errorf("%s: failed without a reason", m)
		}
		if e := j.errors[0]; strings.ContainsRune(e, 0) || !utf8Valid(e) {
			t.Errorf("%s: stored error text %q has NUL or invalid UTF-8", m, e)
		}
	}
	if e := src.snapshot(ids["nul-result"]).errors[0]; !strings.Contains(e, "cannot be stored") {
		t.Errorf("NUL result: reason %q, want it to say the result cannot be stored", e)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// Defect 5: a Handle that ignores its timeout keeps its slot until it
// returns; it is reported as stuck; Concurrency is never exceeded.
func TestConcurrencyIsAHardCapWhenHandlesIgnoreTimeouts(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	g := newGate()
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, gateFunc(g, false, queue.Config{Timeout: 20 * time.Millisecond, MaxRetries: queue.NoRetries})); err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for i := range 6 {
		id := src.add("gate", gateArgs{N: i}, 0)
		src.jobs[id].job.Timeout = 20 * time.Millisecond // as the client stores it from the Config
		ids = append(ids, id)
	}
	w, _ := start(t, src, reg, Config{Concurrency: 2, LeaseDuration: 150 * time.Millisecond})
	waitFor(t, "two stuck executions reported", func() bool { return w.Stats().Stuck == 2 })
	if p := g.peak.Load(); p != 2 {
		t.Fatalf("peak concurrent Handles = %d with Concurrency 2", p)
	}
	if s := w.Stats(); s.Running != 2 || s.Claimed != 2 {
		t.Fatalf("stats %+v: want 2 running and only 2 claimed while the slots are held", s)
	}
	g.open()
	failed := 0
	for _, id := range ids {
		waitFor(t, "job finished", func() bool {
			st := src.snapshot(id).state
			return st == queue.StateFailed || st == queue.StateCompleted
		})
		if j := src.snapshot(id); j.state == queue.StateFailed {
			failed++
			if len(j.errors) != 1 || !strings.Contains(j.errors[0], "timed out") {
				t.Errorf("errors %v, want one timeout", j.errors)
			}
		}
	}
	if failed != 2 {
		t.Errorf("%d jobs failed; want the 2 that ran past their timeout (the rest ran after the gate opened)", failed)
	}
	if p := g.peak.Load(); p != 2 {
		t.Errorf("peak concurrent Handles = %d with Concurrency 2", p)
	}
}

// Defect 6: blocking work is claimed only into free blocking slots, so it is
// never claimed and handed back.
func TestBlockingWorkIsClaimedOnlyIntoFreeBlockingSlots(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	g, fast := newGate(), newGate()
	fast.open()
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, gateFunc(g, false, queue.Config{Blocking: true})); err != nil {
		t.Fatal(err)
	}
	if err := queue.RegisterFunc(reg, queue.NewFunc("fast", queue.Config{}, func(ctx context.Context, a gateArgs) (int, error) { return 1, nil })); err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for range 5 {
		ids = append(ids, src.add("gate", gateArgs{}, 3))
	}
	fastID := src.add("fast", gateArgs{}, 3)
	w, _ := start(t, src, reg, Config{Concurrency: 4, BlockingConcurrency: 1})
	waitFor(t, "fast job completed beside the blocking one", stateIs(src, fastID, queue.StateCompleted))
	waitFor(t, "one blocking job running", func() bool { return g.running.Load() == 1 })
	g.open()
	for _, id := range ids {
		waitFor(t, "blocking job completed", stateIs(src, id, queue.StateCompleted))
	}
	if p := g.peak.Load(); p != 1 {
		t.Errorf("peak blocking Handles = %d with BlockingConcurrency 1", p)
	}
	if s := w.Stats(); s.HandedBack != 0 || s.Claimed != 6 {
		t.Errorf("stats %+v: want 6 claims for 6 jobs and no hand-backs", s)
	}
	for _, r := range src.claimRequests() {
		if len(r.Kinds) == 1 && r.Kinds[0] == "gate" && r.Limit > 1 {
			t.Errorf("claimed blocking work with limit %d while only one blocking slot exists", r.Limit)
		}
	}
}

// Defect 7: a worker claims only the kinds it has registered; other jobs
// wait for a worker that knows them.
func TestWorkerClaimsOnlyRegisteredKinds(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	newer := src.add("KindOnlyTheNextReleaseKnows", okTask{}, 3)
	known := src.add("okTask", okTask{N: 1}, 3)
	_, stop := start(t, src, reg, Config{})
	waitFor(t, "known job completed", stateIs(src, known, queue.StateCompleted))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if j := src.snapshot(newer); j.state != queue.StateAvailable || j.job.Attempt != 0 {
		t.Errorf("job of an unregistered kind: %s attempt %d, want untouched (available, 0)", j.state, j.job.Attempt)
	}
	for _, r := range src.claimRequests() {
		if len(r.Kinds) != 1 || r.Kinds[0] != "okTask" {
			t.Fatalf("claim asked for kinds %v, want [okTask]", r.Kinds)
		}
	}
}

// Defect 8: a batch run (MaxTasks) waits for its jobs instead of cancelling
// them after ShutdownGrace.
func TestMaxTasksWaitsForItsJobs(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	g := newGate()
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, gateFunc(g, true, queue.Config{})); err != nil {
		t.Fatal(err)
	}
	a, b := src.add("gate", gateArgs{}, 3), src.add("gate", gateArgs{}, 3)
	w, err := New(src, reg, Config{MaxTasks: 2, ShutdownGrace: time.Millisecond, PollInterval: 10 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	waitFor(t, "both running", func() bool { return g.running.Load() == 2 })
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while its batch still ran", err)
	case <-time.After(50 * time.Millisecond): // 50x the grace period
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, id := range []uuid.UUID{a, b} {
		if st := src.snapshot(id).state; st != queue.StateCompleted {
			t.Errorf("batch job is %s, want completed", st)
		}
	}
}

// Defect 9: claim errors are retried with a short backoff, not a poll interval.
func TestClaimErrorsAreRetriedSoon(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.claimFail = 4
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	id := src.add("okTask", okTask{}, 3)
	start(t, src, reg, Config{PollInterval: time.Hour})
	waitFor(t, "job completed despite claim errors", stateIs(src, id, queue.StateCompleted))
}

// Defect 9: a worker whose first LISTEN fails subscribes again, and then
// wakes on notifications although its poll interval is an hour.
func TestListenIsRetriedWhenItFailsAtStart(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.subscribeFail = 2
	ns := notifyingSource{src}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	start(t, ns, reg, Config{PollInterval: time.Hour})
	waitFor(t, "subscribed after two failures", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return src.subscribed == 1 })
	waitFor(t, "first claim round done", func() bool { return len(src.claimRequests()) > 0 })
	id := src.add("okTask", okTask{}, 3)
	src.notify <- "default"
	waitFor(t, "woken job completed", stateIs(src, id, queue.StateCompleted))
}

// Defect 10: a row the backend could not read fails alone with its reason.
func TestUnreadableRowFailsAlone(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	var good []uuid.UUID
	for range 5 {
		good = append(good, src.add("okTask", okTask{}, 3))
	}
	bad := src.add("okTask", okTask{}, 3)
	src.invalid[bad] = errors.New("dispatched_at is infinity")
	start(t, src, reg, Config{})
	waitFor(t, "bad row failed", stateIs(src, bad, queue.StateFailed))
	for _, id := range good {
		waitFor(t, "good job completed", stateIs(src, id, queue.StateCompleted))
	}
	if e := src.snapshot(bad).errors; len(e) != 1 || !strings.Contains(e[0], "infinity") {
		t.Errorf("bad row errors %v, want the reason", e)
	}
}

// Run returns the error that stops a worker instead of logging it for ever.
func TestRunReturnsAMissingSchema(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.claimFail, src.claimErr = 1, fmt.Errorf("claim: %w", queue.ErrNotMigrated)
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	w, err := New(src, reg, Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Run(ctx); !errors.Is(err, queue.ErrNotMigrated) {
		t.Fatalf("Run = %v, want ErrNotMigrated", err)
	}
}

func TestRunRefusesAnEmptyRegistry(t *testing.T) {
	t.Parallel()
	w, err := New(newMemSource(), queue.NewRegistry(), Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "register") {
		t.Fatalf("Run with no task types = %v, want an error saying to register them", err)
	}
}

// A shutdown while the backend refuses every outcome ends within a bound
// (grace plus a lease), and says how many outcomes it gave up on.
func TestShutdownEndsWhenTheBackendIsUnreachable(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.finishFail = 1 << 30
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	id := src.add("okTask", okTask{}, 3)
	w, stop := start(t, src, reg, Config{LeaseDuration: 200 * time.Millisecond, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "the outcome pending", func() bool { return w.Stats().Completed == 1 })
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("shutdown took %v with the backend unreachable", took)
	}
	if s := w.Stats(); s.Dropped != 1 {
		t.Errorf("stats %+v: want the one outcome reported dropped", s)
	}
	if st := src.snapshot(id).state; st != queue.StateRunning {
		t.Errorf("job is %s; with every Finish refused it stays running until its lease is rescued", st)
	}
}

// The completers take turns, but a batch whose write hangs (a row lock held
// by another transaction, a slow disk) must not hold back the outcomes that
// come after it: once the write has taken longer than completerHelpAfter,
// the other completer writes them alongside.
func TestStuckCompletionDoesNotHoldBackLaterOutcomes(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.finishStall = make(chan struct{})
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	first := src.add("okTask", okTask{N: 1}, 3)
	start(t, src, reg, Config{})
	waitFor(t, "the first outcome's write to hang", src.stalled.Load)
	second := src.add("okTask", okTask{N: 2}, 3)
	waitFor(t, "the later job completed while the first write hangs", stateIs(src, second, queue.StateCompleted))
	if st := src.snapshot(first).state; st == queue.StateCompleted {
		t.Fatalf("the hung write went through before it was released")
	}
	close(src.finishStall)
	waitFor(t, "the first job completed once its write is released", stateIs(src, first, queue.StateCompleted))
}
