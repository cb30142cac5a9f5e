package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

func TestRetryThenSucceed(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, err := e.client.Dispatch(e.ctx, &Flaky{Key: key, FailUntil: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"flaky"}})
	j := e.waitState(id, queue.StateCompleted, 10*time.Second)
	seen, failed := p.snapshot()
	if len(seen) != 3 || seen[0].Attempt != 0 || seen[1].Attempt != 1 || seen[2].Attempt != 2 {
		t.Errorf("attempts seen = %+v, want 0,1,2", seen)
	}
	if len(failed) != 0 {
		t.Errorf("Failed ran %d times for a job that succeeded", len(failed))
	}
	if len(j.Errors) != 2 || !strings.Contains(j.Errors[1].Error, "attempt 1") {
		t.Errorf("error history = %+v, want the two failed attempts", j.Errors)
	}
	var res map[string]int
	mustJSON(t, j.Result, &res)
	if res["attempt"] != 2 {
		t.Errorf("result %s", j.Result)
	}
}

func TestRetriesExhaustedRunsFailedOnce(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, err := e.client.Dispatch(e.ctx, &Flaky{Key: key, FailUntil: 99})
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"flaky"}})
	j := e.waitState(id, queue.StateFailed, 10*time.Second)
	seen, failed := p.snapshot()
	if len(seen) != 3 {
		t.Errorf("Handle ran %d times, want 3 (1 + MaxRetries 2)", len(seen))
	}
	if len(failed) != 1 || !strings.Contains(failed[0].Error(), "attempt 2") {
		t.Errorf("Failed calls = %v, want one with the last attempt's error", failed)
	}
	if len(j.Errors) != 3 || j.LastError() != "temporary failure on attempt 2" || j.FinishedAt == nil {
		t.Errorf("failed row: errors %+v finished %v", j.Errors, j.FinishedAt)
	}
}

func TestShouldRetryFalseFailsAtOnce(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, err := e.client.Dispatch(e.ctx, &Flaky{Key: key, Permanent: true})
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"flaky"}})
	e.waitState(id, queue.StateFailed, 10*time.Second)
	seen, failed := p.snapshot()
	if len(seen) != 1 || len(failed) != 1 || !errors.Is(failed[0], errPermanent) {
		t.Errorf("attempts %d, Failed calls %v; want 1 attempt and Failed with the card error", len(seen), failed)
	}
}

func TestRetryDelayIsHonoured(t *testing.T) {
	e := newEnv(t)
	key, _ := newProbe(t)
	id, err := e.client.Dispatch(e.ctx, &Flaky{Key: key, FailUntil: 1}, queue.RetryAfter(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"flaky"}})
	j := e.waitState(id, queue.StateRetryable, 10*time.Second)
	if d := time.Until(j.RunAt); d < 59*time.Minute {
		t.Errorf("retry scheduled %v from now, want about an hour", d)
	}
	// Make it due: the maintenance loop promotes it and it completes.
	if _, err := e.pool.Exec(e.ctx, `UPDATE tasq_jobs SET run_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	e.waitState(id, queue.StateCompleted, 10*time.Second)
}

func TestDelayedJobRunsWhenDue(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	start := time.Now()
	id, err := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: "later"}, queue.Delay(700*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"emails"}})
	if j := e.job(id); j.State != queue.StateScheduled {
		t.Fatalf("delayed job is %s, want scheduled", j.State)
	}
	e.waitState(id, queue.StateCompleted, 10*time.Second)
	seen, _ := p.snapshot()
	if len(seen) != 1 {
		t.Fatalf("ran %d times", len(seen))
	}
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Errorf("delayed job finished after %v, before its delay", el)
	}
}

func TestTimeoutIsAContextDeadline(t *testing.T) {
	e := newEnv(t)
	id, err := e.client.Dispatch(e.ctx, Slow{})
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"slow"}})
	j := e.waitState(id, queue.StateFailed, 10*time.Second)
	if !strings.Contains(j.LastError(), "timed out after 100ms") || !strings.Contains(j.LastError(), "deadline exceeded") {
		t.Errorf("last error %q, want a timeout", j.LastError())
	}
}

func TestPanicIsAFailureAndTheWorkerGoesOn(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	bad, err := e.client.Dispatch(e.ctx, &Panicky{Key: "x"})
	if err != nil {
		t.Fatal(err)
	}
	good, err := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: "after"}, queue.OnQueue("panics"))
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"panics"}, Concurrency: 1})
	j := e.waitState(bad, queue.StateFailed, 10*time.Second)
	if !strings.Contains(j.LastError(), "panicked: boom: x") {
		t.Errorf("last error %q, want the panic value", j.LastError())
	}
	e.waitState(good, queue.StateCompleted, 10*time.Second)
	if seen, _ := p.snapshot(); len(seen) != 1 {
		t.Errorf("good job ran %d times", len(seen))
	}
}

func TestTaskCanCancelItself(t *testing.T) {
	e := newEnv(t)
	id, err := e.client.Dispatch(e.ctx, Canceller{})
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{})
	j := e.waitState(id, queue.StateCancelled, 10*time.Second)
	if !strings.Contains(j.LastError(), "order was withdrawn") || j.Attempt != 1 {
		t.Errorf("cancelled job: %+v", j)
	}
}

// Bad input loses nothing: an undecodable payload and a hand-inserted
// garbage row each fail alone, with a reason, and good jobs around them run.
// A job of a kind the worker does not know is not bad input: the worker
// claims only the kinds it registered, so the job stays available, unclaimed,
// until a worker that knows its kind (a newer build in a rolling deploy)
// runs it.
func TestBadRowsFailAloneWithAReason(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	good1, _ := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: "a"}, queue.OnQueue("default"))
	ins := func(kind, payload string) uuid.UUID {
		id := uuid.New()
		if _, err := e.pool.Exec(e.ctx, `INSERT INTO tasq_jobs (id, kind, payload) VALUES ($1, $2, $3)`, id, kind, payload); err != nil {
			t.Fatal(err)
		}
		return id
	}
	unknown := ins("NoSuchTask", `{}`)
	undecodable := ins("SendEmail", `{"To": 42}`)
	garbage := ins("SendEmail", `[1, "two", null]`)
	good2, _ := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: "b"}, queue.OnQueue("default"))

	r := e.startWorker(registry(t), worker.Config{Concurrency: 1})
	for id, want := range map[uuid.UUID]string{
		undecodable: "cannot decode job payload: kind SendEmail",
		garbage:     "cannot decode job payload",
	} {
		j := e.waitState(id, queue.StateFailed, 10*time.Second)
		if !strings.Contains(j.LastError(), want) {
			t.Errorf("job %s: last error %q, want it to contain %q", id, j.LastError(), want)
		}
		if j.Attempt != 1 {
			t.Errorf("bad job ran %d attempts; it should fail at once", j.Attempt)
		}
	}
	e.waitState(good1, queue.StateCompleted, 10*time.Second)
	e.waitState(good2, queue.StateCompleted, 10*time.Second)
	if seen, _ := p.snapshot(); len(seen) != 2 {
		t.Errorf("good jobs ran %d times, want 2", len(seen))
	}
	// With one slot the worker claims the oldest claimable job first, so
	// good2, dispatched after the unknown job, finishing shows that the
	// unknown job was passed over, not merely not reached yet.
	if j := e.job(unknown); j.State != queue.StateAvailable || j.Attempt != 0 || j.AttemptedBy != "" || len(j.Errors) != 0 {
		t.Errorf("job of an unknown kind: %s, attempt %d, attempted by %q, errors %+v; want available and never claimed",
			j.State, j.Attempt, j.AttemptedBy, j.Errors)
	}
	if st := r.Stats(); st.Claimed != 4 || st.HandedBack != 0 {
		t.Errorf("worker stats %+v; want 4 claimed (the unknown kind never) and none handed back", st)
	}
	// A worker that knows the kind runs it.
	newer := queue.NewRegistry()
	queue.MustRegister(newer, lateKind{})
	e.startWorker(newer, worker.Config{})
	j := e.waitState(unknown, queue.StateCompleted, 10*time.Second)
	if j.Attempt != 1 || string(j.Result) != `"run by a newer build"` {
		t.Errorf("job of the late kind: attempt %d result %s; want its first attempt to complete", j.Attempt, j.Result)
	}
}

// lateKind is the kind NoSuchTask, known only to a newer build.
type lateKind struct{}

func (lateKind) Kind() string { return "NoSuchTask" }

func (lateKind) Handle(context.Context) (string, error) { return "run by a newer build", nil }

func TestQueuesAreServedInPriorityOrder(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	var ids []uuid.UUID
	for _, q := range []string{"low", "low", "high", "high"} {
		id, err := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: q}, queue.OnQueue(q))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Priority within a queue: the later job with priority 5 runs first.
	urgent, _ := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: "high"}, queue.OnQueue("high"), queue.WithPriority(5))
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"high", "low"}, Concurrency: 1, MaxTasks: 5})
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatal("worker with MaxTasks 5 did not return")
	}
	seen, _ := p.snapshot()
	var order []uuid.UUID
	for _, m := range seen {
		order = append(order, m.ID)
	}
	want := []uuid.UUID{urgent, ids[2], ids[3], ids[0], ids[1]}
	if len(order) != len(want) {
		t.Fatalf("ran %d jobs, want %d", len(order), len(want))
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("run order %v, want %v (high before low, priority first)", order, want)
		}
	}
}

func TestMaxTasksStopsTheWorker(t *testing.T) {
	e := newEnv(t)
	for range 10 {
		if _, err := e.client.Dispatch(e.ctx, &SendEmail{To: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"emails"}, MaxTasks: 4, Concurrency: 2})
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not return after MaxTasks")
	}
	if n := e.count("state = 'completed'"); n != 4 {
		t.Errorf("%d completed, want exactly 4", n)
	}
	if n := e.count("state = 'available'"); n != 6 {
		t.Errorf("%d left available, want 6", n)
	}
}

// A blocking task cannot take every slot: while blocking jobs hold the
// blocking pool, quick jobs on the same queue still run. The worker claims
// blocking jobs only into free blocking slots, so the reports it cannot run
// yet stay available, never claimed and handed back.
func TestBlockingTasksRunOnTheirOwnPool(t *testing.T) {
	e := newEnv(t)
	rkey, rp := newProbe(t)
	pkey, pp := newProbe(t)
	var reports []uuid.UUID
	for range 6 {
		id, _ := e.client.Dispatch(e.ctx, &Report{Key: rkey})
		reports = append(reports, id)
	}
	var pings []uuid.UUID
	for range 5 {
		id, _ := e.client.Dispatch(e.ctx, &Ping{Key: pkey})
		pings = append(pings, id)
	}
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"mixed"}, Concurrency: 4, BlockingConcurrency: 1})
	for _, id := range pings {
		e.waitState(id, queue.StateCompleted, 15*time.Second)
	}
	select {
	case <-rp.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no report started")
	}
	if n := e.count("state = 'running' AND kind = 'Report'"); n != 1 {
		t.Errorf("%d reports running, want BlockingConcurrency=1", n)
	}
	if n := e.count("state = 'available' AND kind = 'Report' AND attempt = 0 AND attempted_by IS NULL"); n != 5 {
		t.Errorf("%d reports available and never claimed, want the 5 the blocking pool has no room for", n)
	}
	if seen, _ := rp.snapshot(); len(seen) != 1 {
		t.Errorf("%d reports started while the first is blocked, want 1", len(seen))
	}
	if seen, _ := pp.snapshot(); len(seen) != 5 {
		t.Errorf("%d pings ran, want 5", len(seen))
	}
	if st := r.Stats(); st.Claimed != 6 || st.HandedBack != 0 {
		t.Errorf("worker stats %+v; want 6 claimed (5 pings, 1 report) and none handed back", st)
	}
	close(rp.release)
	for _, id := range reports {
		e.waitState(id, queue.StateCompleted, 20*time.Second)
	}
	if st := r.Stats(); st.HandedBack != 0 {
		t.Errorf("worker stats %+v; want none handed back", st)
	}
}

// A Handle that ignores its timeout is not abandoned at the deadline: it
// keeps its slot (Concurrency is a hard cap) and its lease until it
// returns, the worker reports it as stuck meanwhile, and when it returns
// its outcome, the timeout, is written.
func TestHandleIgnoringItsTimeoutKeepsItsSlot(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	released := false
	t.Cleanup(func() {
		if !released {
			close(p.release)
		}
	})
	stubborn, err := e.client.Dispatch(e.ctx, &Stubborn{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	next, err := e.client.Dispatch(e.ctx, &SendEmail{To: "next"}, queue.OnQueue("stubborn"))
	if err != nil {
		t.Fatal(err)
	}
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"stubborn"}, Concurrency: 1, LeaseDuration: 1500 * time.Millisecond})
	waitFor(t, 15*time.Second, "the worker to report the execution stuck past its timeout", func() bool {
		return r.Stats().Stuck == 1
	})
	if j := e.job(stubborn); j.State != queue.StateRunning || j.Attempt != 1 || len(j.Errors) != 0 {
		t.Errorf("stuck job: %s, attempt %d, errors %+v; want still running its first attempt, its lease renewed", j.State, j.Attempt, j.Errors)
	}
	if j := e.job(next); j.State != queue.StateAvailable || j.Attempt != 0 {
		t.Errorf("next job: %s, attempt %d; want available: the one slot is still taken", j.State, j.Attempt)
	}
	if st := r.Stats(); st.Running != 1 || st.Claimed != 1 {
		t.Errorf("worker stats %+v; want 1 claimed and running", st)
	}

	close(p.release)
	released = true
	j := e.waitState(stubborn, queue.StateFailed, 10*time.Second)
	if !strings.Contains(j.LastError(), "timed out after 200ms") || !strings.Contains(j.LastError(), "deadline exceeded") {
		t.Errorf("last error %q, want the timeout", j.LastError())
	}
	e.waitState(next, queue.StateCompleted, 10*time.Second)
	waitFor(t, 10*time.Second, "the stuck count to drop to 0", func() bool { return r.Stats().Stuck == 0 })
	if seen, _ := p.snapshot(); len(seen) != 1 {
		t.Errorf("the stubborn job ran %d times, want once", len(seen))
	}
}

// LISTEN/NOTIFY wakes an idle worker without waiting for its poll.
func TestNotifyWakesIdleWorker(t *testing.T) {
	e := newEnv(t)
	e.startWorker(registry(t), worker.Config{Queues: []string{"emails"}, PollInterval: time.Hour, MaintenanceInterval: time.Hour})
	time.Sleep(200 * time.Millisecond) // let the worker go idle; the poll is an hour away
	start := time.Now()
	id, err := e.client.Dispatch(e.ctx, &SendEmail{To: "now"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(id, queue.StateCompleted, 5*time.Second)
	t.Logf("dispatch to completion with an hour-long poll: %v", time.Since(start))
}

// Graceful shutdown: a job that finishes within the grace period completes;
// one that doesn't is cancelled and handed back, its attempt not counted.
func TestGracefulShutdownHandsBackUnfinishedJobs(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, err := e.client.Dispatch(e.ctx, &Waiter{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"waiting"}, ShutdownGrace: 300 * time.Millisecond})
	select {
	case <-p.started:
	case <-time.After(10 * time.Second):
		t.Fatal("job did not start")
	}
	r.stop(t)
	j := e.job(id)
	if j.State != queue.StateAvailable || j.Attempt != 0 || j.LeaseExpiresAt != nil {
		t.Fatalf("after shutdown the job is %s with attempt %d; want available with attempt 0", j.State, j.Attempt)
	}
	if st := r.Stats(); st.HandedBack != 1 {
		t.Errorf("stats %+v, want 1 handed back", st)
	}
	// A new worker runs it to completion.
	close(p.release)
	e.startWorker(registry(t), worker.Config{Queues: []string{"waiting"}})
	e.waitState(id, queue.StateCompleted, 10*time.Second)
}

func TestGracefulShutdownLetsQuickJobsFinish(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, _ := e.client.Dispatch(e.ctx, &Waiter{Key: key})
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"waiting"}, ShutdownGrace: 10 * time.Second})
	<-p.started
	go func() { time.Sleep(200 * time.Millisecond); close(p.release) }()
	r.stop(t)
	if j := e.job(id); j.State != queue.StateCompleted {
		t.Errorf("job is %s after a graceful stop, want completed", j.State)
	}
}

// A Handle that ignores its context is abandoned after the hard stop, and
// its job handed back anyway.
func TestShutdownHandsBackJobsThatIgnoreCancellation(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	t.Cleanup(func() { close(p.release) })
	id, _ := e.client.Dispatch(e.ctx, &Waiter{Key: key, IgnoreContext: true})
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"waiting"}, ShutdownGrace: 100 * time.Millisecond})
	<-p.started
	r.stop(t)
	if j := e.job(id); j.State != queue.StateAvailable {
		t.Errorf("job is %s, want available (handed back)", j.State)
	}
}

func TestWorkerConfigErrors(t *testing.T) {
	e := newEnv(t)
	reg := registry(t)
	for name, cfg := range map[string]worker.Config{
		"empty queue":      {Queues: []string{""}},
		"duplicate queue":  {Queues: []string{"a", "a"}},
		"negative":         {Concurrency: -1},
		"short lease":      {LeaseDuration: time.Millisecond},
		"negative timeout": {PollInterval: -time.Second},
	} {
		if _, err := worker.New(e.adapter, reg, cfg); err == nil {
			t.Errorf("%s: worker.New accepted %+v", name, cfg)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := worker.New(nil, reg, worker.Config{}); err == nil {
		t.Error("worker.New accepted a nil source")
	}
	if _, err := worker.New(e.adapter, nil, worker.Config{}); err == nil {
		t.Error("worker.New accepted a nil registry")
	}
	// A worker with no task types could claim nothing: Run refuses to start.
	empty, err := worker.New(e.adapter, queue.NewRegistry(), worker.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Run(e.ctx); err == nil || !strings.Contains(err.Error(), "registry holds no task types") {
		t.Errorf("Run with an empty registry: %v; want an error saying it holds no task types", err)
	}
	w, _ := worker.New(e.adapter, reg, worker.Config{Logger: quietLogger()})
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctx); err == nil {
		t.Error("a second Run was accepted")
	}
}
