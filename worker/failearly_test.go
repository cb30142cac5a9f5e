package worker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// spanKey stands for what a tracing middleware puts in the context.
type spanKey struct{}

// seenOutcomes is an attempt middleware that records every attempt's
// outcome by job kind, and marks its context.
type seenOutcomes struct {
	mu  sync.Mutex
	got map[string][]queue.JobState
}

func (s *seenOutcomes) mw(ctx context.Context, a *queue.Attempt, next func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
	a.AfterOutcome(func(o queue.AttemptOutcome) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.got[a.Job.Kind] = append(s.got[a.Job.Kind], o.Outcome.State)
	})
	return next(context.WithValue(ctx, spanKey{}, "span of "+a.Job.Kind))
}

func (s *seenOutcomes) of(kind string) []queue.JobState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]queue.JobState(nil), s.got[kind]...)
}

// hooked fails at once; its Failed hook records the span value it sees.
type hooked struct{}

var hookedSaw = make(chan any, 4)

func (hooked) Kind() string { return "hooked" }
func (hooked) Config() queue.Config {
	return queue.Config{Queue: "default", MaxRetries: 0}
}
func (hooked) Handle(ctx context.Context) (struct{}, error) {
	return struct{}{}, queue.Permanent(context.DeadlineExceeded)
}
func (hooked) Failed(ctx context.Context, err error) {
	hookedSaw <- ctx.Value(spanKey{})
}

// Jobs that end without Handle running — a row the worker cannot read, a job whose last
// attempt was lost with its worker — still pass through the attempt
// middleware with their failed outcome, so that metrics and traces count
// every job that ends; and the Failed hook runs inside the attempt's
// middleware context (its span).
func TestAttemptMiddlewareSeesJobsThatFailBeforeHandle(t *testing.T) {
	t.Parallel()
	m := newMemSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, hooked{})
	seen := &seenOutcomes{got: map[string][]queue.JobState{}}
	unknown := m.add("hooked", map[string]int{}, 3) // its row cannot be read
	m.invalid[unknown] = errors.New("attempt out of range")
	failing := m.add("hooked", map[string]int{}, 0)
	// A job whose only attempt was lost with its worker: claimed once
	// already, with no retry left.
	lost := m.add("hooked", map[string]int{}, 0)
	m.mu.Lock()
	m.jobs[lost].job.Attempt = 1
	m.mu.Unlock()
	_, stop := start(t, m, reg, Config{Middleware: []queue.AttemptMiddleware{seen.mw}})
	waitFor(t, "all three jobs failed", func() bool {
		return stateIs(m, unknown, queue.StateFailed)() && stateIs(m, failing, queue.StateFailed)() && stateIs(m, lost, queue.StateFailed)()
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := seen.of("hooked"); len(got) != 3 || got[0] != queue.StateFailed || got[1] != queue.StateFailed || got[2] != queue.StateFailed {
		t.Errorf("middleware saw the outcomes %v, want [failed failed failed]", got)
	}
	for range 2 {
		select {
		case v := <-hookedSaw:
			if v != "span of hooked" {
				t.Errorf("Failed hook's context value = %v, want the middleware's", v)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the Failed hook did not run twice")
		}
	}
}
