package worker

import (
	"context"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// maintain runs the backend's maintenance, where it has any: promotion of
// due jobs and rescue of expired leases.
func (w *Worker) maintain(ctx context.Context) {
	m, ok := w.src.(queue.Maintainer)
	if !ok {
		return
	}
	t := time.NewTicker(w.cfg.MaintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		promoted, rescued, err := m.Maintain(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.ErrorContext(ctx, "maintenance failed", "err", err)
			}
			continue
		}
		if rescued > 0 {
			w.log.WarnContext(ctx, "rescued jobs whose lease expired", "count", rescued)
		}
		if promoted+rescued > 0 {
			w.poke(w.wake)
		}
	}
}

// listen forwards wake-ups from the backend's notifications. A subscription
// that fails or ends while the worker runs is made again with backoff, so a
// worker that could not listen at start (the role at its connection limit,
// say) does not poll for the rest of its life.
func (w *Worker) listen(ctx context.Context, n queue.Notifier) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		ch, err := n.Subscribe(ctx)
		if err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			w.log.WarnContext(ctx, "cannot listen for notifications; polling meanwhile, and trying again", "err", err,
				"retry_in", backoff, "poll_interval", w.cfg.PollInterval)
			if !sleepCtx(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		w.poke(w.wake) // whatever arrived while not listening
		for q := range ch {
			if q == "" || w.serves(q) {
				w.poke(w.wake)
			}
		}
	}
}

func (w *Worker) serves(q string) bool {
	for _, s := range w.cfg.Queues {
		if s == q {
			return true
		}
	}
	return false
}
