package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// cancelSource is a memSource that is a queue.CancelListener: the test
// sends the notices, as a backend would after an operator's cancel.
type cancelSource struct {
	*memSource
	notices  chan queue.Notice
	listened atomic.Int32
}

func newCancelSource() *cancelSource {
	return &cancelSource{memSource: newMemSource(), notices: make(chan queue.Notice)}
}

func (c *cancelSource) Subscribe(ctx context.Context) (<-chan string, error) {
	return nil, errors.New("the worker must use Listen")
}

func (c *cancelSource) Listen(ctx context.Context) (<-chan queue.Notice, error) {
	c.listened.Add(1)
	out := make(chan queue.Notice)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case n := <-c.notices:
				select {
				case out <- n:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (c *cancelSource) extendCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.extended)
}

// blocker is a task that runs until its context ends and records the cause.
type blocker struct {
	running atomic.Int32
	cause   atomic.Pointer[error]
}

type blockArgs struct{}

func (b *blocker) task() *queue.Func[blockArgs, int] {
	return queue.NewFunc("blocker", queue.Config{MaxRetries: queue.NoRetries}, func(ctx context.Context, _ blockArgs) (int, error) {
		b.running.Add(1)
		defer b.running.Add(-1)
		<-ctx.Done()
		c := context.Cause(ctx)
		b.cause.Store(&c)
		return 0, c
	})
}

func (b *blocker) causeIs(target error) bool {
	c := b.cause.Load()
	return c != nil && errors.Is(*c, target)
}

func TestOperatorCancelIsALostClaimToTheExecutor(t *testing.T) {
	if !errors.Is(errCancelledByOperator, queue.ErrCancelledByOperator) || !errors.Is(errCancelledByOperator, errLeaseLost) {
		t.Errorf("errCancelledByOperator must be both queue.ErrCancelledByOperator (for Handle) and errLeaseLost (for the executor)")
	}
	if errCancelledByOperator.Error() != queue.ErrCancelledByOperator.Error() {
		t.Errorf("its text %q; want the sentinel's", errCancelledByOperator)
	}
}

// A cancel notice cancels the running Handle at once, long before the lease
// renewal (an hour away), with the operator's cause; the outcome is dropped
// and the job stays cancelled.
func TestCancelNoticeCancelsTheHandle(t *testing.T) {
	t.Parallel()
	src := newCancelSource()
	b := &blocker{}
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, b.task()); err != nil {
		t.Fatal(err)
	}
	id := src.add("blocker", blockArgs{}, 0)
	w, _ := start(t, src, reg, Config{LeaseDuration: 3 * time.Hour})
	waitFor(t, "Handle running", func() bool { return b.running.Load() == 1 })
	src.cancelJob(id)
	// A notice for another worker's job, and one for an older claim of this
	// job, change nothing here.
	src.notices <- queue.Notice{Kind: queue.NoticeCancel, Lease: queue.Lease{ID: uuid.New(), Token: 1}}
	src.notices <- queue.Notice{Kind: queue.NoticeCancel, Lease: queue.Lease{ID: id, Token: 0}}
	// The notices are read in order, one at a time: once two more went
	// through, both above were handled.
	src.notices <- queue.Notice{Kind: queue.NoticeWake}
	src.notices <- queue.Notice{Kind: queue.NoticeWake}
	if b.running.Load() != 1 {
		t.Fatal("a cancel notice for another execution cancelled this one")
	}
	renewals := src.extendCalls() // the renewal when Listen started is over by now
	src.notices <- queue.Notice{Kind: queue.NoticeCancel, Lease: queue.Lease{ID: id, Token: 1}}
	waitFor(t, "Handle cancelled", func() bool { return b.running.Load() == 0 })
	if !b.causeIs(queue.ErrCancelledByOperator) {
		t.Errorf("Handle's context cause = %v; want queue.ErrCancelledByOperator", b.cause.Load())
	}
	waitFor(t, "the execution forgotten", func() bool { s := w.Stats(); return s.Running == 0 && s.Pending == 0 })
	if s := w.Stats(); s.LostLeases != 1 || s.Failed != 0 || s.Completed != 0 {
		t.Errorf("stats %+v: want one lost claim and no outcome", s)
	}
	if j := src.snapshot(id); j.state != queue.StateCancelled || len(j.errors) != 0 {
		t.Errorf("job %s, errors %v: want cancelled by the operator, untouched by the worker", j.state, j.errors)
	}
	if src.extendCalls() != renewals {
		t.Errorf("the lease was renewed; the test meant the notice alone to act")
	}
}

// A resync (the backend's notices may have been lost) makes the worker check
// its claims at once instead of at the next renewal.
func TestResyncChecksClaimsAtOnce(t *testing.T) {
	t.Parallel()
	src := newCancelSource()
	b := &blocker{}
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, b.task()); err != nil {
		t.Fatal(err)
	}
	id := src.add("blocker", blockArgs{}, 0)
	start(t, src, reg, Config{LeaseDuration: 3 * time.Hour})
	waitFor(t, "Handle running", func() bool { return b.running.Load() == 1 })
	src.cancelJob(id) // its notice was lost
	src.notices <- queue.Notice{Kind: queue.NoticeResync}
	waitFor(t, "Handle cancelled by the resync's renewal", func() bool { return b.running.Load() == 0 })
	if !b.causeIs(errLeaseLost) {
		t.Errorf("cause %v; want a lost claim", b.cause.Load())
	}
}

// An operator's cancel heard before the claim's execution was added (the
// notice overtook the claim's reply) keeps that execution from starting.
func TestCancelHeardBeforeTheClaimArrives(t *testing.T) {
	e := newExecutions(2)
	j := &queue.Job{ID: uuid.New(), Token: 7}
	if n := e.markCancelled(j.Lease(), errCancelledByOperator); n != 0 {
		t.Fatalf("markCancelled of an unknown claim cancelled %d", n)
	}
	e.reserve(2, false)
	// Another claim of the same job (a later token) is not affected.
	later := &queue.Job{ID: uuid.New(), Token: 8}
	lx, ok := e.add(later, false)
	if !ok || !e.started(lx, func(error) {}, time.Time{}) {
		t.Fatal("an unrelated execution did not start")
	}
	x, ok := e.add(j, false)
	if !ok {
		t.Fatal("add refused the claim")
	}
	if e.started(x, func(error) {}, time.Time{}) {
		t.Error("an execution cancelled before it was added started")
	}
	if held := e.returned(x); held {
		t.Error("its outcome would be sent")
	}
	if len(e.early) != 0 {
		t.Errorf("the early cancel was kept after use: %v", e.early)
	}
	// The memory of early cancels is bounded.
	for i := range 2 * earlyMax {
		e.markCancelled(queue.Lease{ID: uuid.New(), Token: int64(i)}, errCancelledByOperator)
	}
	if len(e.early) > earlyMax {
		t.Errorf("%d early cancels kept; the bound is %d", len(e.early), earlyMax)
	}
}
