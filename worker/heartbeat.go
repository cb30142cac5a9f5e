package worker

import (
	"context"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// heartbeat renews, every third of the lease, the leases of running
// executions and of those whose outcomes are not written yet. Claims the
// backend says are lost are cancelled. It also reports executions running
// past their timeout (their Handle ignores its context).
func (w *Worker) heartbeat(bg context.Context) {
	t := time.NewTicker(w.cfg.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-bg.Done():
			return
		case <-t.C:
		}
		w.renew(bg)
		w.reportStuck(bg)
		w.register(bg)
	}
}

// register records this worker in the backend's list of running workers,
// where it has one, so that operators see which kinds no live worker takes.
func (w *Worker) register(bg context.Context) {
	r, ok := w.src.(queue.WorkerRegistry)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(bg, w.cfg.LeaseDuration/3)
	defer cancel()
	if err := r.RegisterWorker(ctx, w.info, w.cfg.LeaseDuration); err != nil && bg.Err() == nil {
		w.log.WarnContext(bg, "cannot register the worker in the backend's worker list", "err", err)
	}
}

// unregister removes this worker from the list at a clean stop.
func (w *Worker) unregister(ctx context.Context) {
	if r, ok := w.src.(queue.WorkerRegistry); ok {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.UnregisterWorker(ctx, w.cfg.ID); err != nil {
			w.log.WarnContext(ctx, "cannot remove the worker from the backend's worker list", "err", err)
		}
	}
}

func (w *Worker) renew(bg context.Context) {
	leases := w.execs.leases()
	if len(leases) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(bg, w.cfg.LeaseDuration/3)
	defer cancel()
	lost, err := w.src.ExtendLeases(ctx, w.cfg.ID, leases, w.cfg.LeaseDuration)
	if err != nil {
		if bg.Err() == nil {
			w.log.ErrorContext(bg, "cannot renew leases", "jobs", len(leases), "err", err)
		}
		return
	}
	cancelled, other := w.splitCancelled(bg, lost)
	if n := w.execs.markLost(cancelled, errCancelledByOperator); n > 0 {
		w.stats.lost.Add(int64(n))
		w.log.InfoContext(bg, "jobs cancelled by an operator; their Handles' contexts are cancelled", "count", n)
	}
	if n := w.execs.markLost(other, errLeaseLost); n > 0 {
		w.stats.lost.Add(int64(n))
		w.log.WarnContext(bg, "claims lost (lease expired and rescued, or cancelled by an operator); their executions are cancelled", "count", n)
	}
}

func (w *Worker) reportStuck(bg context.Context) {
	fresh, total := w.execs.newlyStuck(time.Now(), w.cfg.LeaseDuration/3)
	w.stats.stuck.Store(int64(total))
	for _, j := range fresh {
		w.log.ErrorContext(bg, "execution stuck: Handle runs past its timeout and ignores its context; it keeps its slot until it returns",
			"job_id", j.ID, "kind", j.Kind, "timeout", j.Timeout)
	}
}
