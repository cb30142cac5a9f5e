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
// every executor is inside a Handle, by how many Handles return each
// growAfter: none for stuckChecks checks in a row (every executor blocked:
// one starts for every job waiting), or fewer than two per executor for
// slowChecks checks in a row (Handles that take half a millisecond or
// more: the pool doubles).
//
// Why not one executor per waiting job, as before: a claim hands over up
// to a thousand jobs at once, faster than executors can take them, so the
// pool grew to as many executors as a claim holds (1,300 in a continuous
// bench of no-op jobs) though two CPUs ran them. Each job then went to an
// executor parked on the channel, which the runtime had to wake, and every
// GC cycle scanned the idle stacks. How long a Handle takes cannot tell
// the two cases apart: on a busy machine a Handle that does nothing waits
// milliseconds for a CPU or a GC assist, so the pool counts returns. With
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
	stuckChecks = 5 // checks in a row without a Handle returning
	slowChecks  = 3 // checks in a row with fewer than two returns per executor
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

// checkGrowth looks again in growAfter and grows the pool as pool says,
// then again while jobs wait for an executor.
func (w *Worker) checkGrowth(returned int64, quiet, slow int) {
	time.AfterFunc(growAfter, func() {
		p := &w.pool
		waiting := len(w.ready) - int(w.idle.Load())
		if waiting <= 0 {
			p.armed.Store(false)
			return
		}
		now := p.returned.Load()
		p.mu.Lock()
		n := 0
		// Only executors all inside Handles tell that Handles hold them;
		// executors waiting for the completers to take their outcomes, or
		// not yet started, would not run a waiting job any sooner if more
		// of them started.
		inHandle := p.entered.Load() - now
		switch r := now - returned; {
		case inHandle < int64(p.executors):
			quiet, slow = 0, 0
		case r == 0:
			if quiet++; quiet >= stuckChecks {
				n, quiet, slow = waiting, 0, 0
			}
		case r < 2*int64(p.executors):
			quiet = 0
			if slow++; slow >= slowChecks {
				n, slow = p.executors, 0
			}
		default:
			quiet, slow = 0, 0
		}
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
