package queue

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// memJobs is an in-memory backend for Wait and Cancel: a JobReader and
// JobEditor whose jobs a test changes, and whose reads it counts or fails.
type memJobs struct {
	name string
	mu   sync.Mutex
	jobs map[uuid.UUID]*JobInfo
	gets int
	fail int // fail the next fail reads
}

func newMemJobs(name string) *memJobs { return &memJobs{name: name, jobs: map[uuid.UUID]*JobInfo{}} }

func (m *memJobs) Name() string                                        { return m.name }
func (m *memJobs) Insert(context.Context, []NewJob) error              { return nil }
func (m *memJobs) Claim(context.Context, ClaimRequest) ([]*Job, error) { return nil, nil }
func (m *memJobs) Finish(context.Context, string, []Outcome) (int, error) {
	return 0, nil
}
func (m *memJobs) ExtendLeases(context.Context, string, []Lease, time.Duration) ([]Lease, error) {
	return nil, nil
}
func (m *memJobs) Close() {}

func (m *memJobs) set(id uuid.UUID, st JobState, result string, errs ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := &JobInfo{ID: id, State: st}
	if result != "" {
		j.Result = json.RawMessage(result)
	}
	for i, e := range errs {
		j.Errors = append(j.Errors, JobError{Attempt: i + 1, Error: e})
	}
	m.jobs[id] = j
}

func (m *memJobs) remove(id uuid.UUID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.jobs, id)
}

func (m *memJobs) GetJob(_ context.Context, id uuid.UUID) (*JobInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	if m.fail > 0 {
		m.fail--
		return nil, errors.New("injected read fault")
	}
	j, ok := m.jobs[id]
	if !ok {
		return nil, ErrJobNotFound
	}
	c := *j
	return &c, nil
}

func (m *memJobs) ListJobs(context.Context, ListFilter) ([]*JobInfo, error) { return nil, nil }

func (m *memJobs) RetryJob(context.Context, uuid.UUID) error  { return nil }
func (m *memJobs) DeleteJob(context.Context, uuid.UUID) error { return nil }
func (m *memJobs) CancelJob(_ context.Context, id uuid.UUID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return ErrJobNotFound
	}
	if j.State.Finished() {
		return ErrJobState
	}
	j.State = StateCancelled
	j.Errors = append(j.Errors, JobError{Error: "cancelled by operator"})
	return nil
}

func (m *memJobs) reads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestWaitReturnsTheOutcome(t *testing.T) {
	ctx := waitCtx(t)
	m := newMemJobs("mem")
	c, err := NewClient(m)
	if err != nil {
		t.Fatal(err)
	}
	done, failed, cancelled, running := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	m.set(done, StateCompleted, `{"n":42}`)
	m.set(failed, StateFailed, "", "first", "card declined")
	m.set(cancelled, StateCancelled, "", "cancelled by operator")
	m.set(running, StateRunning, "")

	raw, err := c.Wait(ctx, done)
	if err != nil || string(raw) != `{"n":42}` {
		t.Errorf("Wait(completed) = %s, %v", raw, err)
	}
	type res struct{ N int }
	if r, err := WaitResult[res](ctx, c, done); err != nil || r.N != 42 {
		t.Errorf("WaitResult = %+v, %v", r, err)
	}
	if _, err := WaitResult[[]string](ctx, c, done); !errors.Is(err, ErrDecode) {
		t.Errorf("WaitResult into the wrong type = %v; want ErrDecode", err)
	}

	_, err = c.Wait(ctx, failed)
	var we *WaitError
	if !errors.Is(err, ErrJobFailed) || errors.Is(err, ErrJobCancelled) || !errors.As(err, &we) ||
		we.LastError != "card declined" || we.Job == nil || !strings.Contains(err.Error(), "card declined") {
		t.Errorf("Wait(failed) = %v; want ErrJobFailed with the last error", err)
	}
	_, err = c.Wait(ctx, cancelled)
	if !errors.Is(err, ErrJobCancelled) || errors.Is(err, ErrJobFailed) {
		t.Errorf("Wait(cancelled) = %v; want ErrJobCancelled", err)
	}
	if _, err := c.Wait(ctx, uuid.New()); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Wait(unknown) = %v; want ErrJobNotFound", err)
	}

	// A running job: Wait polls until it finishes, through a retry.
	got := make(chan error, 1)
	go func() {
		r, err := WaitResult[int](ctx, c, running)
		if err == nil && r != 7 {
			err = errors.New("wrong result")
		}
		got <- err
	}()
	for m.reads() < 10 { // Wait has been polling for a while
		time.Sleep(time.Millisecond)
	}
	m.set(running, StateRetryable, "", "try again")
	before := m.reads()
	for m.reads() < before+2 {
		time.Sleep(time.Millisecond)
	}
	m.set(running, StateCompleted, "7")
	if err := <-got; err != nil {
		t.Errorf("WaitResult of a job that finished while waited for: %v", err)
	}
}

func TestWaitEndsOnDeletionDeadlineAndReadErrors(t *testing.T) {
	ctx := waitCtx(t)
	m := newMemJobs("mem")
	c, _ := NewClient(m)

	id := uuid.New()
	m.set(id, StateScheduled, "")
	got := make(chan error, 1)
	go func() { _, err := c.Wait(ctx, id); got <- err }()
	for m.reads() < 3 {
		time.Sleep(time.Millisecond)
	}
	m.remove(id) // retention
	if err := <-got; !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Wait on a job deleted meanwhile = %v; want ErrJobNotFound", err)
	}

	m.set(id, StateAvailable, "")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Wait(short, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its deadline = %v; want DeadlineExceeded", err)
	}

	// Two failed reads are tried again; three in a row end the wait.
	m.set(id, StateCompleted, "1")
	m.fail = 2
	if _, err := c.Wait(ctx, id); err != nil {
		t.Errorf("Wait after two failed reads = %v; want the result", err)
	}
	m.fail = 3
	if _, err := c.Wait(ctx, id); err == nil || !strings.Contains(err.Error(), "injected read fault") {
		t.Errorf("Wait after three failed reads = %v; want the read's error", err)
	}
}

func TestAwaitByPollingBacksOffAndWakesOnPoke(t *testing.T) {
	ctx := waitCtx(t)
	m := newMemJobs("mem")
	id := uuid.New()
	m.set(id, StateRunning, "")
	poke := make(chan struct{}, 1)
	got := make(chan error, 1)
	began := time.Now()
	go func() { _, err := AwaitByPolling(ctx, m, id, time.Hour, poke); got <- err }()
	// With an hour's cap the reads come at 0, 10, 30, 70, 150, 310 ms...:
	// far fewer than one per millisecond.
	for time.Since(began) < 200*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
	}
	if n := m.reads(); n < 3 || n > 8 {
		t.Errorf("%d reads in 200 ms; want the doubling from 10 ms (about 5)", n)
	}
	m.set(id, StateCompleted, "1")
	poke <- struct{}{} // the notification: read at once, not in 320 ms
	select {
	case err := <-got:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a poke did not make AwaitByPolling read the job")
	}
}

func TestWaitAndCancelLookInEveryBackend(t *testing.T) {
	ctx := waitCtx(t)
	a, b := newMemJobs("a"), newMemJobs("b")
	c, err := NewClient(a, WithDriver("b", b))
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	b.set(id, StateRunning, "")
	if err := c.Cancel(ctx, id); err != nil {
		t.Fatalf("Cancel of a job on the second backend: %v", err)
	}
	if _, err := c.Wait(ctx, id); !errors.Is(err, ErrJobCancelled) {
		t.Errorf("Wait of a job on the second backend = %v; want ErrJobCancelled", err)
	}
	if err := c.Cancel(ctx, id); !errors.Is(err, ErrJobState) {
		t.Errorf("Cancel of a cancelled job = %v; want ErrJobState", err)
	}
	if err := c.Cancel(ctx, uuid.New()); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Cancel of an unknown job = %v; want ErrJobNotFound", err)
	}

	// A backend that cannot look jobs up (SQS) cannot be waited on.
	type bare struct{ Adapter }
	nc, _ := NewClient(bare{a})
	if _, err := nc.Wait(ctx, id); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Wait without a JobReader = %v; want ErrUnsupported", err)
	}
	if err := nc.Cancel(ctx, id); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Cancel without a JobEditor = %v; want ErrUnsupported", err)
	}
}
