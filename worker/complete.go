package worker

import (
	"context"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// completerCount is how many batches of outcomes may be in flight at once:
// while one commit waits for the disk, the next batch is being written.
const completerCount = 2

// finishTimeout bounds one Finish call.
const finishTimeout = 30 * time.Second

// completer writes outcomes in batches: whatever has queued up while the
// previous batch was being written goes in the next call.
func (w *Worker) completer(bg context.Context) {
	batch := make([]queue.Outcome, 0, w.cfg.CompletionBatchSize)
	for o := range w.outcomes {
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
