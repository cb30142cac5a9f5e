package worker

import (
	"time"
)

// Observer is told how long the worker's round trips to its backend take:
// every claim and every batch of outcomes written. Metrics packages
// implement it (tasqprom.Metrics does) to export claim and completion
// latency; set it in Config.Observer.
//
// The worker calls it synchronously, on the goroutine that made the call
// (the fetch loop for claims, a completer for outcomes), holding no lock:
// a method must return quickly and must not block, or it delays claiming or
// writing outcomes. A method that panics is recovered and logged. Methods
// may be called concurrently (there are several completers).
//
// Hooks added later will be optional interfaces an Observer may implement,
// found by type assertion, so that implementing this one stays enough.
type Observer interface {
	// ClaimDone reports one Claim call on queue q: the jobs it returned (0
	// when it found none or failed), how long it took, and its error.
	ClaimDone(q string, n int, d time.Duration, err error)
	// FinishDone reports one Finish call: the outcomes in the batch, how
	// long it took, and its error. A batch that failed is tried again and
	// reported again.
	FinishDone(n int, d time.Duration, err error)
}

// observeStart returns the start of an observed call, or the zero time when
// no Observer is set: then nothing reads the clock.
func (w *Worker) observeStart() time.Time {
	if w.cfg.Observer == nil {
		return time.Time{}
	}
	return time.Now()
}

func (w *Worker) observeClaim(q string, n int, start time.Time, err error) {
	if w.cfg.Observer == nil {
		return
	}
	defer w.recoverObserver("ClaimDone")
	w.cfg.Observer.ClaimDone(q, n, time.Since(start), err)
}

func (w *Worker) observeFinish(n int, start time.Time, err error) {
	if w.cfg.Observer == nil {
		return
	}
	defer w.recoverObserver("FinishDone")
	w.cfg.Observer.FinishDone(n, time.Since(start), err)
}

// recoverObserver keeps a panicking Observer from stopping the worker.
func (w *Worker) recoverObserver(method string) {
	if p := recover(); p != nil {
		w.log.Error("worker: Config.Observer panicked; its figures are incomplete", "method", method, "panic", p)
	}
}
