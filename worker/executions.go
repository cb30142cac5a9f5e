package worker

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// execution is one claim of a job by this worker, from the claim until its
// outcome is written (or known to be stale). While its Handle runs it holds
// a slot; after that it only waits for its outcome to be written, and the
// heartbeat keeps its lease until then.
type execution struct {
	job      *queue.Job
	lease    queue.Lease
	blocking bool
	cancel   context.CancelCauseFunc // cancels Handle's context; nil until it starts
	running  bool                    // Handle has not returned yet
	deadline time.Time               // when Handle should have returned (zero: no timeout)
	stuck    bool                    // reported as running past its deadline
	lost     bool                    // the backend said the claim is no longer held
}

// executions is the worker's table of executions, keyed by (job ID, claim
// token), with the slot accounting: a slot is taken from the claim until
// Handle returns, however long that is.
type executions struct {
	mu       sync.Mutex
	byLease  map[queue.Lease]*execution
	runningN map[uuid.UUID]int // executions per job ID whose Handle still runs
	slots    int               // slots in use
	blocking int               // blocking slots in use
	capacity int
	stopped  error // set by cancelAll: Handles that start later are cancelled at once
	// early holds cancels heard before their execution was added (the
	// notice can overtake the claim's reply), with when they were heard.
	early map[queue.Lease]time.Time
}

func newExecutions(capacity int) *executions {
	return &executions{byLease: map[queue.Lease]*execution{}, runningN: map[uuid.UUID]int{}, capacity: capacity}
}

// Bounds of executions.early: cancels of executions that are not here are
// kept earlyTTL (most are of other workers' jobs), at most earlyMax.
const (
	earlyTTL = time.Minute
	earlyMax = 4096
)

// free returns the free slots and, within them, the free blocking slots.
func (e *executions) free(blockingCap int) (free, freeBlocking int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	free = e.capacity - e.slots
	return free, max(0, min(free, blockingCap-e.blocking))
}

// reserve takes a slot (and a blocking slot) for a job about to be claimed.
func (e *executions) reserve(n int, blocking bool) {
	e.mu.Lock()
	e.slots += n
	if blocking {
		e.blocking += n
	}
	e.mu.Unlock()
}

// release gives back reserved slots that no claimed job used.
func (e *executions) release(n int, blocking bool) {
	e.mu.Lock()
	e.slots -= n
	if blocking {
		e.blocking -= n
	}
	e.mu.Unlock()
}

// add records a claimed job in a reserved slot. It returns false, and
// records nothing, when an execution of the same job still runs here (its
// claim was lost, its Handle has not returned): the new claim must not
// start a second, overlapping execution.
func (e *executions) add(j *queue.Job, blocking bool) (*execution, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.runningN[j.ID] > 0 {
		return nil, false
	}
	x := &execution{job: j, lease: j.Lease(), blocking: blocking, running: true}
	if _, ok := e.early[x.lease]; ok {
		// Cancelled by an operator before it got here: started reports it
		// lost, and Handle never runs.
		delete(e.early, x.lease)
		x.lost = true
	}
	e.byLease[x.lease] = x
	e.runningN[j.ID]++
	return x, true
}

// started records the cancel function and deadline of a running Handle. It
// returns false when the claim was lost before Handle started.
func (e *executions) started(x *execution, cancel context.CancelCauseFunc, deadline time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x.cancel, x.deadline = cancel, deadline
	if e.stopped != nil {
		cancel(e.stopped)
	}
	return !x.lost
}

// cancelAll cancels every running Handle, and any that starts later, with cause.
func (e *executions) cancelAll(cause error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = cause
	for _, x := range e.byLease {
		if x.running && x.cancel != nil {
			x.cancel(cause)
		}
	}
}

// returned marks Handle as returned and frees its slot. It reports whether
// the claim is still held as far as the worker knows (an outcome is worth
// sending); when it is not, the execution is forgotten.
func (e *executions) returned(x *execution) (held bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x.running = false
	x.cancel = nil
	e.slots--
	if x.blocking {
		e.blocking--
	}
	if e.runningN[x.job.ID]--; e.runningN[x.job.ID] <= 0 {
		delete(e.runningN, x.job.ID)
	}
	if x.lost {
		delete(e.byLease, x.lease)
		return false
	}
	return true
}

// settle forgets executions whose outcomes were written, refused or
// dropped, under one lock for the whole batch.
func (e *executions) settle(outcomes ...queue.Outcome) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, o := range outcomes {
		l := queue.Lease{ID: o.ID, Token: o.Token}
		if x, ok := e.byLease[l]; ok && !x.running {
			delete(e.byLease, l)
		}
	}
}

// dropLost removes, in place, the outcomes whose claims the heartbeat
// learned are lost (the backend would refuse them), forgets their
// executions, and returns what is left and how many it dropped.
func (e *executions) dropLost(batch []queue.Outcome) (kept []queue.Outcome, dropped int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	kept = batch[:0]
	for _, o := range batch {
		l := queue.Lease{ID: o.ID, Token: o.Token}
		if x, ok := e.byLease[l]; ok && x.lost && !x.running {
			delete(e.byLease, l)
			dropped++
			continue
		}
		kept = append(kept, o)
	}
	return kept, dropped
}

// leases lists the leases to renew: running executions and those whose
// outcome is not written yet.
func (e *executions) leases() []queue.Lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]queue.Lease, 0, len(e.byLease))
	for l, x := range e.byLease {
		if !x.lost {
			out = append(out, l)
		}
	}
	return out
}

// markLost records that the backend no longer holds these claims for this
// worker, and cancels their Handles with cause. It returns how many running
// Handles it cancelled; a claim whose outcome was being written meanwhile is
// marked but not counted (its outcome may well have landed).
func (e *executions) markLost(ls []queue.Lease, cause error) (n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range ls {
		x, ok := e.byLease[l]
		if !ok || x.lost {
			continue
		}
		x.lost = true
		if x.running {
			n++
			if x.cancel != nil {
				x.cancel(cause)
			}
		}
	}
	return n
}

// markCancelled is markLost for one claim an operator cancelled. A claim that
// is not here yet is remembered for a while, so that an execution added
// after the cancel never starts.
func (e *executions) markCancelled(l queue.Lease, cause error) (n int) {
	e.mu.Lock()
	if _, ok := e.byLease[l]; !ok {
		now := time.Now()
		if len(e.early) >= earlyMax/2 {
			for k, at := range e.early {
				if now.Sub(at) > earlyTTL {
					delete(e.early, k)
				}
			}
		}
		if e.early == nil {
			e.early = map[queue.Lease]time.Time{}
		}
		if len(e.early) < earlyMax {
			e.early[l] = now
		}
		e.mu.Unlock()
		return 0
	}
	e.mu.Unlock()
	return e.markLost([]queue.Lease{l}, cause)
}

// newlyStuck returns running executions past their deadline by more than
// grace that were not reported yet, and how many are stuck in all.
func (e *executions) newlyStuck(now time.Time, grace time.Duration) (fresh []*queue.Job, total int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range e.byLease {
		if !x.running || x.deadline.IsZero() || now.Before(x.deadline.Add(grace)) {
			continue
		}
		total++
		if !x.stuck {
			x.stuck = true
			fresh = append(fresh, x.job)
		}
	}
	return fresh, total
}

// abandonRunning forgets executions whose Handle still runs (shutdown gave
// up on them) and returns them.
func (e *executions) abandonRunning() []*execution {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*execution
	for l, x := range e.byLease {
		if x.running && !x.lost {
			x.lost = true
			out = append(out, x)
			delete(e.byLease, l)
		}
	}
	return out
}

// counts returns how many Handles run and how many outcomes are pending.
func (e *executions) counts() (running, pending int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range e.byLease {
		if x.running {
			running++
		} else {
			pending++
		}
	}
	return running, pending
}
