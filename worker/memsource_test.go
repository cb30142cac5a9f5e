package worker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// memSource is an in-memory queue.Source with the same guards as a real
// backend (claim tokens, owner, state) and fault injection, for unit tests
// of the worker's parts.
type memSource struct {
	mu   sync.Mutex
	jobs map[uuid.UUID]*memJob
	seq  []uuid.UUID // insertion order

	claimFail   int   // fail the next claimFail claims
	claimErr    error // with this error (default errClaimFault)
	finishFail  int   // fail the next finishFail Finish calls
	claims      []queue.ClaimRequest
	extended    [][]queue.Lease // every ExtendLeases call's leases
	finishCalls int
	// finishStall, when set, makes the first Finish call wait until it is
	// closed (or the call's context ends) before writing; stalled reports
	// that the call is waiting.
	finishStall chan struct{}
	stalled     atomic.Bool
	invalid     map[uuid.UUID]error // returned as Job.Invalid on claim

	subscribeFail int // fail the next subscribeFail Subscribe calls
	subscribed    int
	notify        chan string
}

type memJob struct {
	job     queue.Job
	state   queue.JobState
	owner   string
	runAt   time.Time
	result  json.RawMessage
	errors  []string
	outcome queue.Outcome // the last applied
}

var errClaimFault = errors.New("injected claim fault")
var errFinishFault = errors.New("injected finish fault")

func newMemSource() *memSource {
	return &memSource{jobs: map[uuid.UUID]*memJob{}, invalid: map[uuid.UUID]error{}, notify: make(chan string, 16)}
}

// add stores a job of kind with payload v and returns its ID.
func (m *memSource) add(kind string, v any, maxRetries int) uuid.UUID {
	b, _ := json.Marshal(v)
	id := uuid.New()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[id] = &memJob{job: queue.Job{ID: id, Kind: kind, Queue: "default", Payload: b, MaxRetries: maxRetries, DispatchedAt: time.Now()},
		state: queue.StateAvailable}
	m.seq = append(m.seq, id)
	return id
}

func (m *memSource) Claim(ctx context.Context, req queue.ClaimRequest) ([]*queue.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims = append(m.claims, req)
	if m.claimFail > 0 {
		m.claimFail--
		if m.claimErr != nil {
			return nil, m.claimErr
		}
		return nil, errClaimFault
	}
	var out []*queue.Job
	now := time.Now()
	for _, id := range m.seq {
		if len(out) >= req.Limit {
			break
		}
		j := m.jobs[id]
		due := j.state == queue.StateAvailable ||
			((j.state == queue.StateScheduled || j.state == queue.StateRetryable) && !now.Before(j.runAt))
		if !due || j.job.Queue != req.Queue || (len(req.Kinds) > 0 && !slices.Contains(req.Kinds, j.job.Kind)) {
			continue
		}
		j.state, j.owner = queue.StateRunning, req.WorkerID
		j.job.Token++
		j.job.Attempt++
		c := j.job
		c.Invalid = m.invalid[id]
		out = append(out, &c)
	}
	return out, nil
}

func (m *memSource) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if m.finishStall != nil && m.stalled.CompareAndSwap(false, true) {
		select {
		case <-m.finishStall:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finishCalls++
	if m.finishFail > 0 {
		m.finishFail--
		return 0, errFinishFault
	}
	n := 0
	for _, o := range outcomes {
		if err := o.Check(); err != nil {
			return n, err
		}
		j, ok := m.jobs[o.ID]
		if !ok || j.state != queue.StateRunning || j.job.Token != o.Token || j.owner != workerID {
			continue
		}
		n++
		j.state, j.outcome = o.State, o
		if !o.Counts() {
			j.job.Attempt--
		}
		if o.RunsAgain() {
			j.runAt = time.Now().Add(o.Delay)
		}
		if o.State == queue.StateCompleted {
			j.result = o.Result
		}
		if o.Error != "" {
			j.errors = append(j.errors, o.Error)
		}
	}
	return n, nil
}

func (m *memSource) ExtendLeases(ctx context.Context, workerID string, leases []queue.Lease, d time.Duration) ([]queue.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.extended = append(m.extended, slices.Clone(leases))
	var lost []queue.Lease
	for _, l := range leases {
		j, ok := m.jobs[l.ID]
		if !ok || j.state != queue.StateRunning || j.job.Token != l.Token || j.owner != workerID {
			lost = append(lost, l)
		}
	}
	return lost, nil
}

// rescue does what maintenance does to an expired lease: the job is
// available again (its claim token stays, the next claim raises it).
func (m *memSource) rescue(id uuid.UUID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	j.state = queue.StateAvailable
	j.errors = append(j.errors, queue.LeaseExpiredText(j.owner))
}

// makeDue moves a scheduled or retryable job's run time to now, as if its
// delay had passed, so that tests of long delays need not wait for them.
func (m *memSource) makeDue(id uuid.UUID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[id].runAt = time.Now()
}

// cancelJob is an operator's cancel of a running job.
func (m *memSource) cancelJob(id uuid.UUID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[id].state = queue.StateCancelled
}

func (m *memSource) snapshot(id uuid.UUID) memJob {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.jobs[id]
}

func (m *memSource) claimRequests() []queue.ClaimRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.claims)
}

// notifyingSource is a memSource that is also a queue.Notifier.
type notifyingSource struct{ *memSource }

func (n notifyingSource) Subscribe(ctx context.Context) (<-chan string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subscribeFail > 0 {
		n.subscribeFail--
		return nil, errors.New("injected: too many connections for role")
	}
	n.subscribed++
	out := make(chan string)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case q := <-n.notify:
				select {
				case out <- q:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
