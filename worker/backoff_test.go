package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// These tests show snoozes and backoff delays reaching the source: the
// outcome the worker writes, and what the source does with it. Long delays
// are not waited for: the test moves the job's run time (makeDue).

// probe records what the executions of one job saw, for task types whose
// values are decoded from a payload and so cannot carry a closure.
type probe struct {
	plan       func(run int) error // the error of the run-th run (1-based); nil completes
	mu         sync.Mutex
	attempts   []int // Metadata.Attempt of each run
	nextRetry  []int // the attempt NextRetry was given, per call
	failedHook atomic.Int64
	asked      atomic.Int64 // ShouldRetry calls
}

var probes sync.Map // probe name -> *probe

func newProbe(t *testing.T, plan func(run int) error) string {
	name := t.Name() + "/" + uuid.NewString()
	probes.Store(name, &probe{plan: plan})
	t.Cleanup(func() { probes.Delete(name) })
	return name
}

func probeOf(name string) *probe {
	p, _ := probes.Load(name)
	return p.(*probe)
}

func (p *probe) runs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.attempts)
}

// probed is a task run by its probe's plan, with every hook.
type probed struct {
	queue.TaskBase
	Probe string
	// NextRetry's answer: Wait plus a minute per attempt; "panic" panics.
	Wait time.Duration
	Mode string
}

func (probed) Kind() string { return "probed" }

func (*probed) Config() queue.Config {
	return queue.Config{Backoff: queue.Exponential{Base: time.Second}} // NextRetry must win over it
}

func (t *probed) Handle(ctx context.Context) (int, error) {
	p := probeOf(t.Probe)
	p.mu.Lock()
	p.attempts = append(p.attempts, t.Attempt())
	run := len(p.attempts)
	p.mu.Unlock()
	if err := p.plan(run); err != nil {
		return 0, err
	}
	return run, nil
}

func (t *probed) ShouldRetry(err error) bool {
	probeOf(t.Probe).asked.Add(1)
	return true
}

func (t *probed) Failed(ctx context.Context, err error) { probeOf(t.Probe).failedHook.Add(1) }

func (t *probed) NextRetry(attempt int, err error) time.Duration {
	p := probeOf(t.Probe)
	p.mu.Lock()
	p.nextRetry = append(p.nextRetry, attempt)
	p.mu.Unlock()
	if t.Mode == "panic" {
		panic("NextRetry exploded")
	}
	return t.Wait + time.Duration(attempt)*time.Minute
}

// outcomeIs waits for the job's last applied outcome to be st with delay.
func outcomeIs(m *memSource, id uuid.UUID, st queue.JobState, delay time.Duration) func() bool {
	return func() bool {
		j := m.snapshot(id)
		return j.state == st && j.outcome.State == st && j.outcome.Delay == delay
	}
}

func TestSnoozedJobRunsAgainWithTheSameAttempt(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &probed{})
	// No retries at all, and a ShouldRetry that would retry: the snoozes
	// spend nothing and ask nothing.
	later := newProbe(t, func(run int) error {
		switch run {
		case 1:
			return queue.Snooze(time.Hour)
		case 2:
			return fmt.Errorf("partner busy: %w", queue.Snooze(2*time.Hour))
		}
		return nil
	})
	now := newProbe(t, func(run int) error {
		if run <= 3 {
			return queue.Snooze(0)
		}
		return nil
	})
	id := src.add("probed", probed{Probe: later}, 0)
	nowID := src.add("probed", probed{Probe: now}, 0)
	w, _ := start(t, src, reg, Config{})

	for i, d := range []time.Duration{time.Hour, 2 * time.Hour} {
		waitFor(t, fmt.Sprintf("snooze %d written with its delay", i+1), func() bool {
			return len(probeOf(later).runs()) == i+1 && outcomeIs(src, id, queue.StateScheduled, d)()
		})
		if j := src.snapshot(id); j.job.Attempt != 0 || len(j.errors) != 0 || j.outcome.Counts() {
			t.Fatalf("after snooze %d: attempt %d, errors %v, outcome %+v; want the attempt taken back and no history", i+1, j.job.Attempt, j.errors, j.outcome)
		}
		src.makeDue(id)
	}
	waitFor(t, "snoozed job completed", stateIs(src, id, queue.StateCompleted))
	waitFor(t, "job snoozed for 0 completed", stateIs(src, nowID, queue.StateCompleted))

	for name, c := range map[string]struct {
		id    uuid.UUID
		probe string
		runs  int
	}{"snoozed later": {id, later, 3}, "snoozed for 0": {nowID, now, 4}} {
		p, j := probeOf(c.probe), src.snapshot(c.id)
		if got := p.runs(); !slices.Equal(got, make([]int, c.runs)) {
			t.Errorf("%s: the runs saw attempts %v, want %d runs all at attempt 0", name, got, c.runs)
		}
		if j.job.Attempt != 1 || len(j.errors) != 0 || string(j.result) != fmt.Sprint(c.runs) {
			t.Errorf("%s: completed at attempt %d with errors %v and result %s; want attempt 1, no errors, result %d", name, j.job.Attempt, j.errors, j.result, c.runs)
		}
		if n, asked := p.failedHook.Load(), p.asked.Load(); n != 0 || asked != 0 {
			t.Errorf("%s: Failed ran %d times and ShouldRetry was asked %d times; a snooze asks neither", name, n, asked)
		}
	}
	if s := w.Stats(); s.Snoozed != 5 || s.Retried != 0 || s.Failed != 0 || s.HandedBack != 0 || s.Completed != 2 {
		t.Errorf("stats %+v: want 5 snoozed, 2 completed, nothing retried, failed or handed back", s)
	}
}

func TestExponentialBackoffDelaysReachTheSource(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	reg := queue.NewRegistry()
	down := errors.New("partner down")
	fail := func(context.Context, gateArgs) (int, error) { return 0, down }
	for kind, b := range map[string]queue.Exponential{
		"exp":     {Base: time.Hour, Max: 3 * time.Hour},
		"fromJob": {Max: time.Hour},                                    // grows from the job's retry delay
		"jitter":  {Base: time.Hour, Max: 24 * time.Hour, Jitter: 0.5}, // waits in [d/2, d]
	} {
		if err := queue.RegisterFunc(reg, queue.NewFunc(kind, queue.Config{Backoff: b}, fail)); err != nil {
			t.Fatal(err)
		}
	}
	exp := src.add("exp", gateArgs{}, 3)
	fromJob := src.add("fromJob", gateArgs{}, 2)
	src.jobs[fromJob].job.RetryDelay = time.Minute // as the client stores Config.RetryDelay or RetryAfter
	jitter := src.add("jitter", gateArgs{}, 2)
	w, _ := start(t, src, reg, Config{})

	for id, delays := range map[uuid.UUID][]time.Duration{
		exp:     {time.Hour, 2 * time.Hour, 3 * time.Hour}, // 4h is above Max
		fromJob: {time.Minute, 2 * time.Minute},
	} {
		for i, d := range delays {
			waitFor(t, fmt.Sprintf("retry %d after %v", i+1, d), func() bool {
				return outcomeIs(src, id, queue.StateRetryable, d)() && len(src.snapshot(id).errors) == i+1
			})
			src.makeDue(id)
		}
		waitFor(t, "job failed after its last retry", stateIs(src, id, queue.StateFailed))
		if j := src.snapshot(id); len(j.errors) != len(delays)+1 || j.job.Attempt != len(delays)+1 {
			t.Errorf("failed at attempt %d with %d errors, want %d of each", j.job.Attempt, len(j.errors), len(delays)+1)
		}
	}
	for i, d := range []time.Duration{time.Hour, 2 * time.Hour} {
		waitFor(t, "jittered retry written", func() bool {
			j := src.snapshot(jitter)
			return j.state == queue.StateRetryable && len(j.errors) == i+1
		})
		if got := src.snapshot(jitter).outcome.Delay; got < d/2 || got > d {
			t.Errorf("jittered retry %d waits %v, want within [%v, %v]", i+1, got, d/2, d)
		}
		src.makeDue(jitter)
	}
	waitFor(t, "jittered job failed", stateIs(src, jitter, queue.StateFailed))
	if s := w.Stats(); s.Retried != 7 || s.Failed != 3 {
		t.Errorf("stats %+v: want 7 retries and 3 failures", s)
	}
}

func TestNextRetryWinsOverBackoffAndItsPanicsFallBack(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &probed{})
	always := func(int) error { return errors.New("down") }
	own, panicky, negative := newProbe(t, always), newProbe(t, always), newProbe(t, always)
	ownID := src.add("probed", probed{Probe: own, Wait: 90 * time.Minute}, 1)
	panicID := src.add("probed", probed{Probe: panicky, Mode: "panic"}, 1)
	src.jobs[panicID].job.RetryDelay = 5 * time.Minute
	negID := src.add("probed", probed{Probe: negative, Wait: -time.Hour}, 1)
	start(t, src, reg, Config{})

	waitFor(t, "NextRetry's delay written", outcomeIs(src, ownID, queue.StateRetryable, 90*time.Minute))
	waitFor(t, "a panicking NextRetry falls back to the job's retry delay", outcomeIs(src, panicID, queue.StateRetryable, 5*time.Minute))
	// -1h + 0 per attempt is below zero: retried at once, then failed.
	waitFor(t, "a negative NextRetry retries at once", stateIs(src, negID, queue.StateFailed))
	src.makeDue(ownID)
	src.makeDue(panicID)
	waitFor(t, "job with NextRetry failed", stateIs(src, ownID, queue.StateFailed))
	waitFor(t, "job with a panicking NextRetry failed", stateIs(src, panicID, queue.StateFailed))

	for name, c := range map[string]struct {
		probe string
		id    uuid.UUID
	}{"own": {own, ownID}, "panicky": {panicky, panicID}, "negative": {negative, negID}} {
		p := probeOf(c.probe)
		p.mu.Lock()
		asked := slices.Clone(p.nextRetry)
		p.mu.Unlock()
		// NextRetry is asked once, about the first attempt: the second is the last.
		if !slices.Equal(asked, []int{0}) || p.failedHook.Load() != 1 {
			t.Errorf("%s: NextRetry asked about attempts %v, Failed ran %d times; want [0] and once", name, asked, p.failedHook.Load())
		}
		if j := src.snapshot(c.id); len(j.errors) != 2 {
			t.Errorf("%s: %d errors, want 2", name, len(j.errors))
		}
	}
}
