package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// recObserver records what the worker tells its Observer.
type recObserver struct {
	mu       sync.Mutex
	claims   []obsCall
	finishes []obsCall
}

type obsCall struct {
	queue string
	n     int
	d     time.Duration
	err   error
}

func (o *recObserver) ClaimDone(q string, n int, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.claims = append(o.claims, obsCall{q, n, d, err})
}

func (o *recObserver) FinishDone(n int, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finishes = append(o.finishes, obsCall{"", n, d, err})
}

// sums returns the jobs claimed and outcomes written without error, and
// the failed calls of each kind.
func (o *recObserver) sums() (claimed, written, claimErrs, finishErrs int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.claims {
		if c.err != nil {
			claimErrs++
		} else {
			claimed += c.n
		}
	}
	for _, c := range o.finishes {
		if c.err != nil {
			finishErrs++
		} else {
			written += c.n
		}
	}
	return
}

// The Observer hears of every claim and every Finish call, failed ones
// included, with their queue, size and a duration.
func TestObserverSeesClaimsAndFinishes(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.claimFail, src.finishFail = 1, 1
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	for n := range 3 {
		src.add("okTask", okTask{N: n}, 3)
	}
	obs := &recObserver{}
	w, stop := start(t, src, reg, Config{Observer: obs})
	waitFor(t, "3 jobs completed", func() bool { return w.Stats().Completed == 3 && w.Stats().Pending == 0 })
	waitFor(t, "3 outcomes written", func() bool { _, written, _, _ := obs.sums(); return written == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	claimed, written, claimErrs, finishErrs := obs.sums()
	if claimed != 3 || written != 3 || claimErrs != 1 || finishErrs != 1 {
		t.Errorf("observed %d claimed, %d written, %d failed claims, %d failed finishes; want 3, 3, 1, 1", claimed, written, claimErrs, finishErrs)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.claims) != len(src.claimRequests()) {
		t.Errorf("observed %d claims, the source saw %d", len(obs.claims), len(src.claimRequests()))
	}
	for _, c := range obs.claims {
		if c.queue != "default" || c.d < 0 {
			t.Errorf("claim observed as %+v: want queue default and a duration", c)
		}
		if c.err != nil && !errors.Is(c.err, errClaimFault) {
			t.Errorf("claim error %v, want the injected fault", c.err)
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.finishCalls != len(obs.finishes) {
		t.Errorf("observed %d Finish calls, the source saw %d", len(obs.finishes), src.finishCalls)
	}
}

type panicObserver struct{ calls atomic.Int64 }

func (p *panicObserver) ClaimDone(string, int, time.Duration, error) {
	p.calls.Add(1)
	panic("observer bug")
}

func (p *panicObserver) FinishDone(int, time.Duration, error) {
	p.calls.Add(1)
	panic("observer bug")
}

// An Observer that panics does not stop the worker nor lose a job.
func TestPanickingObserverIsContained(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	id := src.add("okTask", okTask{N: 1}, 3)
	obs := &panicObserver{}
	start(t, src, reg, Config{Observer: obs})
	waitFor(t, "job completed", stateIs(src, id, queue.StateCompleted))
	if obs.calls.Load() < 2 {
		t.Errorf("observer called %d times, want a claim and a finish at least", obs.calls.Load())
	}
}

// maintSource is a memSource whose maintenance promotes 2 jobs and rescues
// 1 on its first run, and nothing after.
type maintSource struct {
	*memSource
	runs atomic.Int64
}

func (m *maintSource) Maintain(context.Context) (promoted, rescued int, err error) {
	if m.runs.Add(1) == 1 {
		return 2, 1, nil
	}
	return 0, 0, nil
}

// Stats counts what this worker's maintenance promoted and rescued.
func TestStatsCountRescuesAndPromotions(t *testing.T) {
	t.Parallel()
	src := &maintSource{memSource: newMemSource()}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	w, _ := start(t, src, reg, Config{MaintenanceInterval: 10 * time.Millisecond})
	waitFor(t, "two maintenance runs", func() bool { return w.Stats().MaintenanceRuns >= 2 })
	if s := w.Stats(); s.Rescued != 1 || s.Promoted != 2 {
		t.Errorf("stats %+v: want 1 rescued, 2 promoted", s)
	}
}
