package worker

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pool sizes the executors: enough that claimed jobs do not wait long for
// one, and no more. Up to floor executors start whenever a job waits and
// none is idle. Beyond the floor the pool grows only while jobs wait and
// every executor is inside a Handle at slowChecks checks growAfter apart
// (the pool doubles), or at stuckChecks checks with no Handle returning
// between them (every executor blocked: one starts for every job waiting).
//
// Why not one executor per waiting job, as before: a claim hands over up
// to a thousand jobs at once, faster than executors can take them, so the
// pool grew to as many executors as a claim holds (1,300 in a continuous
// bench of no-op jobs) though two CPUs ran them. Each job then went to an
// executor parked on the channel, which the runtime had to wake, and every
// GC cycle scanned the idle stacks. How long a Handle takes cannot tell
// the two cases apart: on a busy machine a Handle that does nothing waits
// milliseconds for a CPU or a GC assist, so the pool looks at where its
// executors are (see growth). With
// the floor (8 on 2 CPUs), interleaved against the pool before: continuous
// 62.1-64.4k against 60.8-62.4k jobs/s, burn-down 79.0-81.0k against
// 76.1-78.5k (3 pairs each); floors from 2 to 64 measured alike.
type pool struct {
	mu        sync.Mutex
	executors int // started
	floor     int // started as soon as jobs wait
	max       int // Concurrency

	entered  atomic.Int64 // Handles begun, ever
	returned atomic.Int64 // Handles returned, ever
	armed    atomic.Bool  // a check is due in growAfter
}

// How the pool watches jobs that wait: a check each growAfter.
const (
	growAfter   = time.Millisecond
	stuckChecks = 5 // checks in a row, all executors in Handles, none returning
	slowChecks  = 3 // checks in a row with all executors inside Handles
)

// poolFloor is how many executors start as soon as jobs wait: enough to
// keep every CPU busy with short jobs while others wait on the network.
func poolFloor(concurrency int) int {
	return min(concurrency, max(8, 4*runtime.GOMAXPROCS(0)))
}

// grow starts an executor if jobs wait, none is idle and the pool is below
// its floor; above it, it arms the check. The fetch loop calls it for
// every job it hands over.
func (w *Worker) grow() {
	if len(w.ready) <= int(w.idle.Load()) {
		return
	}
	p := &w.pool
	p.mu.Lock()
	start := p.executors < p.floor
	if start {
		p.executors++
	}
	check := !start && p.executors < p.max
	p.mu.Unlock()
	if start {
		go w.executor(w.jobCtx)
	} else if check && p.armed.CompareAndSwap(false, true) {
		w.checkGrowth(p.returned.Load(), 0, 0)
	}
}

// growth decides, at one check, how many executors to start: inHandle of
// the executors are inside a Handle, r Handles returned since the last
// check, quiet and slow count the checks in a row before this one that
// found every executor inside a Handle (slow), and none returning (quiet).
// Only executors all inside Handles tell that Handles hold them: executors
// waiting for the completers to take their outcomes, or not yet started,
// would not run a waiting job any sooner if more of them started. How many
// returned does not tell a short Handle from a long one on a busy machine,
// nor one that waits on the network from one that computes, so it only
// separates Handles that block for good (none returned: one executor for
// every job waiting) from the rest (the pool doubles).
func growth(executors, inHandle, waiting int, r int64, quiet, slow int) (n, q, s int) {
	if inHandle < executors {
		return 0, 0, 0
	}
	q, s = quiet+1, slow+1
	if r > 0 {
		q = 0
	}
	switch {
	case q >= stuckChecks:
		return waiting, 0, 0
	case s >= slowChecks:
		return executors, q, 0
	}
	return 0, q, s
}

// checkGrowth looks again in growAfter and grows the pool as growth says,
// then again while jobs wait for an executor.
func (w *Worker) checkGrowth(returned int64, quiet, slow int) {
	time.AfterFunc(growAfter, func() {
		p := &w.pool
		waiting := len(w.ready) - int(w.idle.Load())
		if waiting <= 0 {
			p.armed.Store(false)
			return
		}
		// entered before returned: a Handle that begins and returns between
		// the two loads cannot make the executors look held.
		entered := p.entered.Load()
		now := p.returned.Load()
		p.mu.Lock()
		var n int
		n, quiet, slow = growth(p.executors, int(entered-now), waiting, now-returned, quiet, slow)
		n = min(n, waiting, p.max-p.executors)
		p.executors += n
		full := p.executors >= p.max
		p.mu.Unlock()
		for range n {
			go w.executor(w.jobCtx)
		}
		if full {
			p.armed.Store(false)
			return
		}
		w.checkGrowth(now, quiet, slow)
	})
}
