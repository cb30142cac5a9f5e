package tasqtest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/adaptertest"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqtest"
	"github.com/tasqhq/tasq/worker"
)

// The Recorder is a backend like the others: it passes their conformance
// suite (without transactions, which it refuses).
func TestRecorderConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{New: func(t *testing.T) queue.Adapter { return tasqtest.New(t) }})
}

// fakeTB records failures instead of failing the test, so a test can check
// what an assertion says.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	logs   []string
	fatal  bool
}

func newFakeTB(t *testing.T) *fakeTB { return &fakeTB{TB: t} }

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.mu.Lock()
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

// run calls fn as a test body would: a Fatalf ends it.
func (f *fakeTB) run(fn func()) {
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	<-done
}

func (f *fakeTB) failures() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.errors, "\n")
}

// ProcessOrder is a second task kind, for "what else was dispatched".
type ProcessOrder struct{ OrderID int }

func (*ProcessOrder) Handle(context.Context) (string, error) { return "done", nil }

func TestRecordAndAssert(t *testing.T) {
	ctx := context.Background()
	rec := tasqtest.New(t)
	client := rec.Client()
	for _, to := range []string{"ada@example.com", "bob@example.com"} {
		if err := signUp(ctx, client, to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Dispatch(ctx, &ProcessOrder{OrderID: 7}, queue.Delay(time.Hour), queue.OnQueue("orders")); err != nil {
		t.Fatal(err)
	}

	got := tasqtest.Dispatched[*SendEmail](t, rec)
	if len(got) != 2 || got[0].To != "ada@example.com" || got[1].To != "bob@example.com" || got[0].mailer != nil {
		t.Fatalf("Dispatched = %+v, want ada then bob, decoded from their payloads", got)
	}
	if !tasqtest.AssertDispatched(t, rec, func(e *SendEmail) bool { return e.To == "bob@example.com" }) ||
		!tasqtest.AssertDispatched[*ProcessOrder](t, rec, nil) ||
		!tasqtest.AssertNotDispatched(t, rec, func(e *SendEmail) bool { return e.To == "eve@example.com" }) ||
		!tasqtest.AssertDispatchedCount[*SendEmail](t, rec, 2, nil) {
		t.Fatal("an assertion that holds failed")
	}
	jobs := tasqtest.Jobs[*ProcessOrder](t, rec)
	if len(jobs) != 1 || jobs[0].Task.OrderID != 7 || jobs[0].Info.Queue != "orders" || jobs[0].Info.State != queue.StateScheduled {
		t.Errorf("Jobs[*ProcessOrder] = %+v; want order 7, scheduled on queue orders", jobs[0].Info)
	}
	// Without Inline nothing runs.
	if st := rec.All()[0].State; st != queue.StateAvailable {
		t.Errorf("a recorded job is %s, want available", st)
	}
	rec.Reset()
	if len(rec.All()) != 0 || len(tasqtest.Dispatched[*SendEmail](t, rec)) != 0 {
		t.Error("Reset kept jobs")
	}
}

func TestAssertDispatchedSaysWhatWasDispatchedInstead(t *testing.T) {
	ctx := context.Background()
	rec := tasqtest.New(t)
	client := rec.Client()
	for _, to := range []string{"ada@example.com", "bob@example.com"} {
		if err := signUp(ctx, client, to); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := client.Dispatch(ctx, &ProcessOrder{OrderID: i}); err != nil {
			t.Fatal(err)
		}
	}

	ft := newFakeTB(t)
	var ok bool
	ft.run(func() {
		ok = tasqtest.AssertDispatched(ft, rec, func(e *SendEmail) bool { return e.To == "eve@example.com" })
	})
	want := `tasqtest: no *tasqtest_test.SendEmail (kind "SendEmail") matching the condition was dispatched.
Dispatched of that kind (2):
  {"To":"ada@example.com","Subject":"Welcome","Body":"Hello!"}  [queue emails, available]
  {"To":"bob@example.com","Subject":"Welcome","Body":"Hello!"}  [queue emails, available]
Other kinds dispatched: ProcessOrder ×3`
	if ok || ft.failures() != want {
		t.Errorf("AssertDispatched = %v, failure message:\n%s\nwant:\n%s", ok, ft.failures(), want)
	}

	ft = newFakeTB(t)
	ft.run(func() {
		ok = tasqtest.AssertNotDispatched(ft, rec, func(e *SendEmail) bool { return strings.HasPrefix(e.To, "bob") })
	})
	want = `tasqtest: 1 *tasqtest_test.SendEmail (kind "SendEmail") matching the condition was dispatched, want none:
  {"To":"bob@example.com","Subject":"Welcome","Body":"Hello!"}  [queue emails, available]
`
	if ok || ft.failures() != want {
		t.Errorf("AssertNotDispatched = %v, failure message:\n%s\nwant:\n%s", ok, ft.failures(), want)
	}

	ft = newFakeTB(t)
	ft.run(func() { ok = tasqtest.AssertDispatchedCount[*SendEmail](ft, rec, 1, nil) })
	if ok || !strings.HasPrefix(ft.failures(), `tasqtest: 2 *tasqtest_test.SendEmail (kind "SendEmail") were dispatched, want 1:`) {
		t.Errorf("AssertDispatchedCount = %v, failure message:\n%s", ok, ft.failures())
	}

	empty := tasqtest.New(t)
	ft = newFakeTB(t)
	ft.run(func() { ok = tasqtest.AssertDispatched[*SendEmail](ft, empty, nil) })
	want = "tasqtest: no *tasqtest_test.SendEmail (kind \"SendEmail\") was dispatched.\nNone of that kind was dispatched.\nNothing was dispatched."
	if ok || ft.failures() != want {
		t.Errorf("AssertDispatched on an empty recorder = %v, failure message:\n%s\nwant:\n%s", ok, ft.failures(), want)
	}
}

func TestDispatchTxIsRefused(t *testing.T) {
	rec := tasqtest.New(t)
	_, err := rec.Client().DispatchTx(context.Background(), struct{}{}, &SendEmail{To: "a@example.com"})
	if !errors.Is(err, queue.ErrTxUnsupported) || len(rec.All()) != 0 {
		t.Errorf("DispatchTx = %v with %d jobs stored; want ErrTxUnsupported and nothing stored", err, len(rec.All()))
	}
}

func TestDispatchedFunc(t *testing.T) {
	type resizeArgs struct {
		Path  string
		Width int
	}
	resize := queue.NewFunc("resize_image", queue.Config{}, func(ctx context.Context, a resizeArgs) (string, error) {
		return fmt.Sprintf("%s@%d", a.Path, a.Width), nil
	})
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, resize); err != nil {
		t.Fatal(err)
	}
	rec := tasqtest.New(t, tasqtest.Inline(reg))
	id, err := rec.Client().Dispatch(context.Background(), resize.With(resizeArgs{Path: "cat.png", Width: 200}))
	if err != nil {
		t.Fatal(err)
	}
	if got := tasqtest.DispatchedFunc(t, rec, resize); len(got) != 1 || got[0].Width != 200 {
		t.Errorf("DispatchedFunc = %+v", got)
	}
	if res := tasqtest.Result[string](t, rec, id); res != "cat.png@200" {
		t.Errorf("Result = %q", res)
	}
}

// Flaky fails until attempt FailUntil; it records its hooks.
type Flaky struct {
	queue.TaskBase
	FailUntil int
	Final     bool // errors are not worth retrying
	Panic     bool
	Sleep     time.Duration

	log *hookLog
}

type hookLog struct {
	mu      sync.Mutex
	handled []int // attempts
	failed  []string
}

func (l *hookLog) snapshot() ([]int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.handled...), append([]string(nil), l.failed...)
}

var errFinal = errors.New("final")

func (*Flaky) Config() queue.Config {
	return queue.Config{MaxRetries: 2, RetryDelay: time.Hour, Timeout: 100 * time.Millisecond}
}

func (t *Flaky) Handle(ctx context.Context) (int, error) {
	t.log.mu.Lock()
	t.log.handled = append(t.log.handled, t.Attempt())
	t.log.mu.Unlock()
	switch {
	case t.Panic:
		panic("boom")
	case t.Sleep > 0:
		<-ctx.Done()
		return 0, ctx.Err()
	case t.Final:
		return 0, errFinal
	case t.Attempt() < t.FailUntil:
		return 0, fmt.Errorf("attempt %d failed", t.Attempt())
	}
	return t.Attempt(), nil
}

func (t *Flaky) ShouldRetry(err error) bool { return !errors.Is(err, errFinal) }

func (t *Flaky) Failed(ctx context.Context, err error) {
	t.log.mu.Lock()
	defer t.log.mu.Unlock()
	t.log.failed = append(t.log.failed, err.Error())
}

func inlineFlaky(t *testing.T) (*tasqtest.Recorder, *hookLog, *fakeTB) {
	log := &hookLog{}
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *Flaky { return &Flaky{log: log} })
	ft := newFakeTB(t)
	return tasqtest.New(ft, tasqtest.Inline(reg)), log, ft
}

func TestInlineRunsAttemptsAsAWorkerWould(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		task      *Flaky
		state     queue.JobState
		handled   []int
		failed    string // what Failed saw, "" if it did not run
		lastError string
	}{
		{"succeeds on the last retry", &Flaky{FailUntil: 2}, queue.StateCompleted, []int{0, 1, 2}, "", "attempt 1 failed"},
		{"runs out of retries", &Flaky{FailUntil: 5}, queue.StateFailed, []int{0, 1, 2}, "attempt 2 failed", "attempt 2 failed"},
		{"ShouldRetry says no", &Flaky{Final: true}, queue.StateFailed, []int{0}, "final", "final"},
		{"panic", &Flaky{Panic: true}, queue.StateFailed, []int{0, 1, 2}, "tasq: task panicked: boom", "tasq: task panicked: boom"},
		{"timeout", &Flaky{Sleep: time.Hour}, queue.StateFailed, []int{0, 1, 2}, "tasq: task timed out after 100ms", "tasq: task timed out after 100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "timeout" {
				t.Parallel() // three 100ms attempts
			}
			rec, log, ft := inlineFlaky(t)
			id, err := rec.Client().Dispatch(ctx, tc.task)
			if err != nil {
				t.Fatalf("Dispatch = %v; a failing Handle must not fail the dispatch", err)
			}
			job, err := rec.GetJob(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			handled, failed := log.snapshot()
			if job.State != tc.state || fmt.Sprint(handled) != fmt.Sprint(tc.handled) || !strings.HasPrefix(job.LastError(), tc.lastError) {
				t.Errorf("job %s after attempts %v, last error %q; want %s after %v, last error %q",
					job.State, handled, job.LastError(), tc.state, tc.handled, tc.lastError)
			}
			if (tc.failed == "") != (len(failed) == 0) || (tc.failed != "" && !strings.HasPrefix(failed[0], tc.failed)) || len(failed) > 1 {
				t.Errorf("Failed hook saw %q, want %q once", failed, tc.failed)
			}
			if tc.state == queue.StateCompleted {
				if res := tasqtest.Result[int](t, rec, id); res != 2 {
					t.Errorf("Result = %d, want 2", res)
				}
			}
			if len(ft.logs) != len(tc.handled)-btoi(tc.state == queue.StateCompleted) {
				t.Errorf("logged %d failed attempts: %q", len(ft.logs), ft.logs)
			}
			if ft.failures() != "" {
				t.Errorf("Inline failed the test: %s", ft.failures())
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestResultSaysWhyAJobDidNotComplete(t *testing.T) {
	rec, _, _ := inlineFlaky(t)
	id, err := rec.Client().Dispatch(context.Background(), &Flaky{FailUntil: 9})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTB(t)
	ft.run(func() { tasqtest.Result[int](ft, rec, id) })
	want := fmt.Sprintf("tasqtest: job %s (Flaky) is failed, not completed (attempts: 3 of 3); errors:\n  attempt 1: attempt 0 failed\n  attempt 2: attempt 1 failed\n  attempt 3: attempt 2 failed", id)
	if !ft.fatal || ft.failures() != want {
		t.Errorf("Result on a failed job: fatal %v, message:\n%s\nwant:\n%s", ft.fatal, ft.failures(), want)
	}
	ft = newFakeTB(t)
	ft.run(func() { tasqtest.Result[int](ft, rec, uuid.New()) })
	if !ft.fatal || !strings.Contains(ft.failures(), "job not found") {
		t.Errorf("Result on an unknown job: %s", ft.failures())
	}
}

// picky's factory misbehaves when told to.
type picky struct{ N int }

func (*picky) Handle(context.Context) (int, error) { return 1, nil }

func TestInlineFailsTheJobWhoseFactoryMisbehaves(t *testing.T) {
	var broken atomic.Bool
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *picky {
		if broken.Load() {
			return nil
		}
		return &picky{}
	})
	ft := newFakeTB(t)
	rec := tasqtest.New(ft, tasqtest.Inline(reg))
	broken.Store(true)
	id, err := rec.Client().Dispatch(context.Background(), &picky{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	job, _ := rec.GetJob(context.Background(), id)
	if job.State != queue.StateFailed || job.Attempt != 1 || !strings.Contains(job.LastError(), "factory returned a nil *tasqtest_test.picky") {
		t.Errorf("job = %s after %d attempts, error %q; want failed at once with the factory's fault", job.State, job.Attempt, job.LastError())
	}
	broken.Store(false)
	id, _ = rec.Client().Dispatch(context.Background(), &picky{N: 2})
	if res := tasqtest.Result[int](t, rec, id); res != 1 {
		t.Errorf("the next job: %d", res)
	}
}

// Chain dispatches its Next from Handle; Self dispatches itself forever.
type Chain struct {
	Step int
	Self bool

	client *queue.Client
	order  *[]int
}

func (t *Chain) Handle(ctx context.Context) (int, error) {
	*t.order = append(*t.order, t.Step)
	if t.Self || t.Step < 3 {
		if _, err := t.client.Dispatch(ctx, &Chain{Step: t.Step + 1, Self: t.Self}); err != nil {
			return 0, err
		}
	}
	return t.Step, nil
}

func TestInlineNestedDispatches(t *testing.T) {
	var order []int
	var client *queue.Client
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *Chain { return &Chain{client: client, order: &order} })
	ft := newFakeTB(t)
	rec := tasqtest.New(ft, tasqtest.Inline(reg))
	client = rec.Client()

	if _, err := client.Dispatch(context.Background(), &Chain{Step: 1}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[1 2 3]" || len(tasqtest.Dispatched[*Chain](t, rec)) != 3 {
		t.Errorf("chain ran %v", order)
	}
	for _, j := range rec.All() {
		if j.State != queue.StateCompleted {
			t.Errorf("job %d is %s", j.Payload, j.State)
		}
	}

	rec.Reset()
	order = nil
	if _, err := client.Dispatch(context.Background(), &Chain{Step: 1, Self: true}); err != nil {
		t.Fatal(err)
	}
	if len(order) != tasqtest.MaxInlineDepth || !strings.Contains(ft.failures(), "nested 32 deep") {
		t.Errorf("a self-dispatching task ran %d times; failures: %s", len(order), ft.failures())
	}
}

func TestInlineRecordsKindsTheRegistryLacks(t *testing.T) {
	ft := newFakeTB(t)
	rec := tasqtest.New(ft, tasqtest.Inline(queue.NewRegistry()))
	if _, err := rec.Client().Dispatch(context.Background(), &ProcessOrder{OrderID: 1}); err != nil {
		t.Fatal(err)
	}
	if st := rec.All()[0].State; st != queue.StateAvailable || !strings.Contains(strings.Join(ft.logs, "\n"), "ProcessOrder is not in the registry") {
		t.Errorf("an unregistered kind: state %s, logs %q", st, ft.logs)
	}
}

type resolvedTask struct {
	ID    int
	Value string `json:"-"`
}

func (t *resolvedTask) Handle(context.Context) (string, error) { return t.Value, nil }

type resolverFunc func(ctx context.Context, task any, payload []byte) error

func (f resolverFunc) Resolve(ctx context.Context, task any, payload []byte) error {
	return f(ctx, task, payload)
}

func TestInlineResolver(t *testing.T) {
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &resolvedTask{})
	rec := tasqtest.New(t, tasqtest.Inline(reg), tasqtest.WithResolver(resolverFunc(func(ctx context.Context, task any, payload []byte) error {
		rt := task.(*resolvedTask)
		rt.Value = fmt.Sprintf("row %d", rt.ID)
		return nil
	})))
	id, err := rec.Client().Dispatch(context.Background(), &resolvedTask{ID: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res := tasqtest.Result[string](t, rec, id); res != "row 4" {
		t.Errorf("Result = %q, want what the Resolver loaded", res)
	}
}

// A worker runs factory-built tasks from a Recorder; a job whose factory
// misbehaves fails alone, and the worker goes on.
func TestWorkerRunsFactoryBuiltTasksFromARecorder(t *testing.T) {
	ctx := context.Background()
	rec := tasqtest.New(t)
	client := rec.Client()
	mailer := &fakeMailer{}
	var calls atomic.Int64
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *SendEmail {
		if calls.Add(1) == 3 { // the 2nd job (the 1st call is RegisterFactory's check)
			panic("mailer pool closed")
		}
		return &SendEmail{mailer: mailer}
	})
	var ids []uuid.UUID
	for i := range 5 {
		id, err := client.Dispatch(ctx, &SendEmail{To: fmt.Sprintf("u%d@example.com", i), Subject: "Hi"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	w, err := worker.New(rec, reg, worker.Config{Queues: []string{"emails"}, Concurrency: 1, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for st := w.Stats(); st.Completed+st.Failed < 5; st = w.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("worker stats after 30s: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		job, _ := rec.GetJob(ctx, id)
		want := queue.StateCompleted
		if i == 1 {
			want = queue.StateFailed
		}
		if job.State != want {
			t.Errorf("job %d is %s (%s), want %s", i, job.State, job.LastError(), want)
		}
		if i == 1 && (!strings.Contains(job.LastError(), "factory panicked: mailer pool closed") || job.Attempt != 1) {
			t.Errorf("job 1: attempt %d, error %q; want failed at once with the factory's panic", job.Attempt, job.LastError())
		}
	}
	if got := mailer.Sent(); len(got) != 4 {
		t.Errorf("sent %v, want the 4 other emails", got)
	}
}

// Sleepy snoozes until its Ready-th run.
type Sleepy struct {
	Ready int
	runs  *atomic.Int64
}

func (*Sleepy) Config() queue.Config { return queue.Config{MaxRetries: queue.NoRetries} }

func (t *Sleepy) Handle(context.Context) (int64, error) {
	n := t.runs.Add(1)
	if t.Ready == 0 || n < int64(t.Ready) {
		return 0, queue.Snooze(time.Hour)
	}
	return n, nil
}

func TestInlineSnoozeRunsAgainWithoutSpendingAnAttempt(t *testing.T) {
	var runs atomic.Int64
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *Sleepy { return &Sleepy{runs: &runs} })
	ft := newFakeTB(t)
	rec := tasqtest.New(ft, tasqtest.Inline(reg))
	id, err := rec.Client().Dispatch(context.Background(), &Sleepy{Ready: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res := tasqtest.Result[int64](t, rec, id); res != 3 {
		t.Errorf("Result = %d, want 3 runs", res)
	}
	if job, _ := rec.GetJob(context.Background(), id); job.Attempt != 1 || len(job.Errors) != 0 {
		t.Errorf("after two snoozes: attempt %d, errors %v; want attempt 1 and no errors", job.Attempt, job.Errors)
	}

	runs.Store(0)
	id, _ = rec.Client().Dispatch(context.Background(), &Sleepy{})
	job, _ := rec.GetJob(context.Background(), id)
	if runs.Load() != 1000 || job.State != queue.StateScheduled || !strings.Contains(ft.failures(), "ran 1000 times without finishing") {
		t.Errorf("a task that always snoozes: %d runs, state %s, failures %q", runs.Load(), job.State, ft.failures())
	}
}

func TestNewRefusesOptionsItCannotHonour(t *testing.T) {
	for name, opts := range map[string][]tasqtest.Option{
		"Inline(nil)":              {tasqtest.Inline(nil)},
		"WithResolver, not Inline": {tasqtest.WithResolver(resolverFunc(func(context.Context, any, []byte) error { return nil }))},
	} {
		ft := newFakeTB(t)
		ft.run(func() { tasqtest.New(ft, opts...) })
		if !ft.fatal {
			t.Errorf("New with %s did not stop the test", name)
		}
	}
}
