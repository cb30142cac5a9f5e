package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// probe records what tasks saw while running. Tasks are decoded fresh from
// their payload, so they find their test's probe through the Key field.
type probe struct {
	mu       sync.Mutex
	attempts []queue.Metadata
	failed   []error
	release  chan struct{} // tasks that wait block until it is closed
	started  chan uuid.UUID
}

var probes sync.Map // key -> *probe

func newProbe(t *testing.T) (string, *probe) {
	key := t.Name() + "/" + uuid.NewString()
	p := &probe{release: make(chan struct{}), started: make(chan uuid.UUID, 1000)}
	probes.Store(key, p)
	t.Cleanup(func() { probes.Delete(key) })
	return key, p
}

func probeFor(key string) *probe {
	v, ok := probes.Load(key)
	if !ok {
		return &probe{release: make(chan struct{}), started: make(chan uuid.UUID, 1)}
	}
	return v.(*probe)
}

func (p *probe) record(m queue.Metadata) {
	p.mu.Lock()
	p.attempts = append(p.attempts, m)
	p.mu.Unlock()
	select {
	case p.started <- m.ID:
	default:
	}
}

func (p *probe) snapshot() ([]queue.Metadata, []error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]queue.Metadata(nil), p.attempts...), append([]error(nil), p.failed...)
}

// SendEmail is the guide's first class-based task.
type SendEmail struct {
	queue.TaskBase
	Key     string
	To      string
	Subject string
	Body    string
}

func (*SendEmail) Config() queue.Config {
	return queue.Config{Queue: "emails", MaxRetries: 5, RetryDelay: 2 * time.Minute, Timeout: 30 * time.Second}
}

func (t *SendEmail) Handle(ctx context.Context) (bool, error) {
	probeFor(t.Key).record(t.Metadata())
	return t.To != "", nil
}

// Flaky fails until attempt FailUntil, then succeeds; it has every hook.
type Flaky struct {
	queue.TaskBase
	Key       string
	FailUntil int
	Permanent bool // the error is not worth retrying
}

func (*Flaky) Config() queue.Config {
	return queue.Config{Queue: "flaky", MaxRetries: 2, RetryDelay: queue.RetryImmediately}
}

var errPermanent = errors.New("card declined")

func (t *Flaky) Handle(ctx context.Context) (map[string]int, error) {
	probeFor(t.Key).record(t.Metadata())
	if t.Permanent {
		return nil, fmt.Errorf("charge: %w", errPermanent)
	}
	if t.Attempt() < t.FailUntil {
		return nil, fmt.Errorf("temporary failure on attempt %d", t.Attempt())
	}
	return map[string]int{"attempt": t.Attempt()}, nil
}

func (t *Flaky) ShouldRetry(err error) bool { return !errors.Is(err, errPermanent) }

func (t *Flaky) Failed(ctx context.Context, err error) {
	p := probeFor(t.Key)
	p.mu.Lock()
	p.failed = append(p.failed, err)
	p.mu.Unlock()
}

// Waiter blocks until its probe is released or its context ends.
type Waiter struct {
	queue.TaskBase
	Key           string
	IgnoreContext bool
}

func (*Waiter) Config() queue.Config {
	return queue.Config{Queue: "waiting", MaxRetries: 1}
}

func (t *Waiter) Handle(ctx context.Context) (string, error) {
	p := probeFor(t.Key)
	p.record(t.Metadata())
	if t.IgnoreContext {
		<-p.release
		return "released", nil
	}
	select {
	case <-p.release:
		return "released", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Stubborn has a short timeout and ignores its context until its probe is
// released; then it returns its context's error, as a Handle that checks
// its context only between long blocking calls does.
type Stubborn struct {
	queue.TaskBase
	Key string
}

func (*Stubborn) Config() queue.Config {
	return queue.Config{Queue: "stubborn", Timeout: 200 * time.Millisecond, MaxRetries: queue.NoRetries}
}

func (t *Stubborn) Handle(ctx context.Context) (string, error) {
	p := probeFor(t.Key)
	p.record(t.Metadata())
	<-p.release
	return "", ctx.Err()
}

// Slow honours its context and has a short timeout.
type Slow struct {
	Key string
}

func (Slow) Kind() string { return "integration.Slow" }

func (Slow) Config() queue.Config {
	return queue.Config{Queue: "slow", Timeout: 100 * time.Millisecond, MaxRetries: queue.NoRetries}
}

func (t Slow) Handle(ctx context.Context) (struct{}, error) {
	select {
	case <-time.After(time.Minute):
	case <-ctx.Done():
		return struct{}{}, ctx.Err()
	}
	return struct{}{}, nil
}

// Panicky panics in Handle.
type Panicky struct{ Key string }

func (*Panicky) Config() queue.Config {
	return queue.Config{Queue: "panics", MaxRetries: queue.NoRetries}
}

func (t *Panicky) Handle(ctx context.Context) (int, error) { panic("boom: " + t.Key) }

// Report is the guide's blocking (SyncTask) report generation.
type Report struct {
	queue.TaskBase
	Key string
}

func (*Report) Config() queue.Config {
	return queue.Config{Queue: "mixed", Blocking: true}
}

func (t *Report) Handle(ctx context.Context) (string, error) {
	p := probeFor(t.Key)
	p.record(t.Metadata())
	select {
	case <-p.release:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "report.pdf", nil
}

// Ping is a quick non-blocking task sharing Report's queue.
type Ping struct {
	queue.TaskBase
	Key string
}

func (*Ping) Config() queue.Config { return queue.Config{Queue: "mixed"} }

func (t *Ping) Handle(ctx context.Context) (string, error) {
	probeFor(t.Key).record(t.Metadata())
	return "pong", nil
}

// Canceller cancels itself.
type Canceller struct{}

func (Canceller) Handle(ctx context.Context) (any, error) {
	return nil, queue.Cancel(errors.New("order was withdrawn"))
}

func registry(t *testing.T) *queue.Registry {
	t.Helper()
	reg := queue.NewRegistry()
	for _, err := range []error{
		queue.Register(reg, &SendEmail{}),
		queue.Register(reg, &Flaky{}),
		queue.Register(reg, &Waiter{}),
		queue.Register(reg, Slow{}),
		queue.Register(reg, &Panicky{}),
		queue.Register(reg, &Report{}),
		queue.Register(reg, &Ping{}),
		queue.Register(reg, Canceller{}),
		queue.Register(reg, &Stubborn{}),
	} {
		if err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	return reg
}
