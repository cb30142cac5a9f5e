package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// mwLog records what middleware saw, in order.
type mwLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *mwLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *mwLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// TestMiddlewareAroundDispatchAndAttempts: dispatch middleware runs in
// order and its headers travel in the job's metadata (beside WithMeta's
// keys) to every attempt's middleware, which runs in order and learns each
// decided outcome.
func TestMiddlewareAroundDispatchAndAttempts(t *testing.T) {
	e := newEnv(t)
	var log mwLog
	c, err := queue.NewClient(e.adapter, queue.WithDispatchMiddleware(
		func(ctx context.Context, jobs []*queue.NewJob, next func(context.Context) error) error {
			log.add("d1 in %d", len(jobs))
			for _, j := range jobs {
				j.SetHeader("request-id", "r-42")
			}
			err := next(ctx)
			log.add("d1 out %v", err)
			return err
		},
		func(ctx context.Context, jobs []*queue.NewJob, next func(context.Context) error) error {
			log.add("d2 in %s", jobs[0].Headers["request-id"])
			return next(ctx)
		},
	))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := newProbe(t)
	id, err := c.Dispatch(e.ctx, &Flaky{Key: key, FailUntil: 2}, queue.WithMeta(map[string]string{"tenant": "acme"}))
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	mustJSON(t, e.job(id).Meta, &meta)
	if meta["tenant"] != "acme" || meta[queue.HeadersMetaKey] == nil {
		t.Errorf("stored meta = %v, want tenant and %s", meta, queue.HeadersMetaKey)
	}

	outer := func(ctx context.Context, a *queue.Attempt, next func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
		log.add("a1 in attempt=%d hdr=%s md=%d", a.Job.Attempt, a.Headers["request-id"], a.Metadata.Attempt)
		a.AfterOutcome(func(o queue.AttemptOutcome) {
			log.add("a1 outcome %s dropped=%v err=%v", o.Outcome.State, o.Dropped, o.Err != nil)
		})
		res, err := next(ctx)
		log.add("a1 out")
		return res, err
	}
	inner := func(ctx context.Context, a *queue.Attempt, next func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
		log.add("a2 in")
		return next(ctx)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"flaky"}, Middleware: []queue.AttemptMiddleware{outer, inner}})
	e.waitState(id, queue.StateCompleted, 10*time.Second)
	want := []string{
		"d1 in 1", "d2 in r-42", "d1 out <nil>",
		"a1 in attempt=1 hdr=r-42 md=0", "a2 in", "a1 out", "a1 outcome retryable dropped=false err=true",
		"a1 in attempt=2 hdr=r-42 md=1", "a2 in", "a1 out", "a1 outcome retryable dropped=false err=true",
		"a1 in attempt=3 hdr=r-42 md=2", "a2 in", "a1 out", "a1 outcome completed dropped=false err=false",
	}
	// The last outcome is decided before it is written; wait for it.
	waitFor(t, 5*time.Second, "the last outcome callback", func() bool { return len(log.snapshot()) >= len(want) })
	got := log.snapshot()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("middleware saw\n%q\nwant\n%q", got, want)
	}
}

// TestDispatchMiddlewareCanRefuse: a middleware's error, or one that never
// calls next, stores nothing.
func TestDispatchMiddlewareCanRefuse(t *testing.T) {
	e := newEnv(t)
	refuse := errors.New("refused by policy")
	c, err := queue.NewClient(e.adapter, queue.WithDispatchMiddleware(
		func(ctx context.Context, jobs []*queue.NewJob, next func(context.Context) error) error {
			if jobs[0].Queue == "flaky" {
				return refuse
			}
			return nil // forgets next
		}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dispatch(e.ctx, &Flaky{Key: "x"}); !errors.Is(err, refuse) {
		t.Errorf("Dispatch = %v, want the middleware's error", err)
	}
	if _, err := c.Dispatch(e.ctx, &Flaky{Key: "x"}, queue.OnQueue("other")); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Errorf("Dispatch through a middleware that skips next = %v, want ErrInvalidConfig", err)
	}
	if n := e.count("true"); n != 0 {
		t.Errorf("%d jobs stored, want none", n)
	}
}
