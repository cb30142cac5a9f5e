package worker

import (
	"context"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// completerCount is how many batches of outcomes may be in flight at once.
// The completers take turns (see completer): normally one writes while the
// other gathers what arrives meanwhile; both write at once only when a write
// has taken longer than completerHelpAfter.
const completerCount = 2

// completerHelpAfter is how long a completer waits for its turn before it
// writes alongside the one whose write is taking long: a batch waiting on a
// row lock another transaction holds, or on a slow disk, must not hold back
// every later outcome.
const completerHelpAfter = 50 * time.Millisecond

// finishTimeout bounds one Finish call.
const finishTimeout = 30 * time.Second

// completer writes outcomes in batches of up to CompletionBatchSize. It
// takes the turn before gathering, so that while one completer's statement
// runs, outcomes pile up for the next one: under load the batches grow and
// the statements become fewer. Two completers writing whenever outcomes were
// there made batches of about 300 outcomes in a 200k burn-down, two
// statements contending for the same pages and both backends for the same
// CPU; taking turns made them about twice as large, and the burn-down 6%
// faster (tasq bench, 2026-12-01).
func (w *Worker) completer(bg context.Context, turn chan struct{}) {
	batch := make([]queue.Outcome, 0, w.cfg.CompletionBatchSize)
	wait := time.NewTimer(completerHelpAfter)
	wait.Stop()
	for o := range w.outcomes {
		held := false
		wait.Reset(completerHelpAfter)
		select {
		case turn <- struct{}{}:
			held = true
		case <-wait.C:
			// The other completer's write is taking long: write alongside it.
		}
		wait.Stop()
		batch = append(batch[:0], o)
	drain:
		for len(batch) < w.cfg.CompletionBatchSize {
			select {
			case o, ok := <-w.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		w.flush(bg, batch)
		if held {
			<-turn
		}
	}
}

// flush writes one batch. It never drops an outcome while its lease may
// still be held: it retries, with backoff, for as long as the worker runs
// (the heartbeat keeps renewing the leases of pending outcomes meanwhile),
// leaving out outcomes whose claim the heartbeat learned is lost. Only at
// shutdown does it give up, a lease's length after the last job ended.
func (w *Worker) flush(bg context.Context, batch []queue.Outcome) {
	backoff := time.Duration(0)
	for {
		var lost int
		batch, lost = w.execs.dropLost(batch)
		w.stats.stale.Add(int64(lost))
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(bg, finishTimeout)
		t0 := w.observeStart()
		n, err := w.src.Finish(ctx, w.cfg.ID, batch)
		cancel()
		w.observeFinish(len(batch), t0, err)
		if err == nil {
			if stale := len(batch) - n; stale > 0 {
				w.stats.stale.Add(int64(stale))
				w.log.WarnContext(bg, "the backend refused outcomes of executions that no longer hold their jobs (lease expired and rescued, or cancelled by an operator)", "count", stale)
			}
			w.execs.settle(batch...)
			return
		}
		if by := w.flushBy.Load(); by != 0 && time.Now().UnixNano() > by {
			w.log.ErrorContext(bg, "cannot write job outcomes and the worker is stopping; giving up: their jobs run again after their leases expire", "count", len(batch), "err", err)
			w.stats.dropped.Add(int64(len(batch)))
			w.execs.settle(batch...)
			return
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
		w.log.ErrorContext(bg, "cannot write job outcomes; retrying", "count", len(batch), "err", err, "retry_in", backoff)
		time.Sleep(backoff)
	}
}
