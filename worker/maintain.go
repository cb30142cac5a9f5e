package worker

import (
	"context"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// maintain runs the backend's maintenance, where it has any: promotion of
// due jobs, rescue of expired leases, and retention. On a backend that
// elects a leader (queue.LeaderElector) only the leader does it; elsewhere
// every worker does (their maintenance is safe to run concurrently).
func (w *Worker) maintain(ctx context.Context) {
	m, hasMaint := w.src.(queue.Maintainer)
	p, hasPurge := w.src.(queue.Purger)
	if !hasMaint && !hasPurge {
		return
	}
	le, elects := w.src.(queue.LeaderElector)
	t := time.NewTicker(w.cfg.MaintenanceInterval)
	defer t.Stop()
	var lastTry, lastRetention time.Time
	leading := !elects
	defer func() {
		if elects && leading {
			w.resign(ctx, le)
		}
	}()
	for {
		if elects && time.Since(lastTry) >= w.cfg.LeaderTTL/3 {
			lastTry = time.Now()
			leading = w.elect(ctx, le, leading)
		}
		if leading {
			if hasMaint {
				w.maintainOnce(ctx, m)
			}
			if hasPurge && time.Since(lastRetention) >= w.cfg.Retention.Interval {
				lastRetention = time.Now()
				w.retain(ctx, p)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// elect asks for (or renews) the leader's term and logs a change.
func (w *Worker) elect(ctx context.Context, le queue.LeaderElector, was bool) bool {
	tctx, cancel := context.WithTimeout(ctx, w.cfg.LeaderTTL/3)
	ok, err := le.TryLead(tctx, w.cfg.ID, w.cfg.LeaderTTL)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.log.ErrorContext(ctx, "leader election failed", "err", err)
		}
		// Keep leading only while the term may still hold: a renewal that
		// failed leaves at least two thirds of it.
		ok = was
		if was && time.Since(w.leaderSince.Load().(time.Time)) > w.cfg.LeaderTTL*2/3 {
			ok = false
		}
	} else if ok {
		w.leaderSince.Store(time.Now())
	}
	switch {
	case ok && !was:
		w.log.InfoContext(ctx, "this worker leads maintenance now", "term", w.cfg.LeaderTTL)
	case !ok && was:
		w.log.WarnContext(ctx, "this worker no longer leads maintenance")
	}
	w.leader.Store(ok)
	return ok
}

func (w *Worker) resign(ctx context.Context, le queue.LeaderElector) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := le.Resign(rctx, w.cfg.ID); err != nil {
		w.log.WarnContext(rctx, "cannot resign the maintenance lead; another worker takes over when the term ends", "err", err)
	}
	w.leader.Store(false)
}

func (w *Worker) maintainOnce(ctx context.Context, m queue.Maintainer) {
	w.stats.maintenance.Add(1)
	promoted, rescued, err := m.Maintain(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.ErrorContext(ctx, "maintenance failed", "err", err)
		}
		return
	}
	w.stats.promoted.Add(int64(promoted))
	w.stats.rescued.Add(int64(rescued))
	if rescued > 0 {
		w.log.WarnContext(ctx, "rescued jobs whose lease expired", "count", rescued)
	}
	if promoted+rescued > 0 {
		w.poke(w.wake)
	}
}

// retentionBudget bounds one retention run; what is left waits for the next.
const retentionBudget = 10 * time.Second

// retain deletes (or archives) finished jobs past their retention age, in
// bounded batches. After a slow batch it pauses as long as the batch took,
// so that retention never takes more than about half of the database's time.
func (w *Worker) retain(ctx context.Context, p queue.Purger) {
	r := w.cfg.Retention
	var rules []queue.PurgeFilter
	except := make([]string, 0, len(r.Queues))
	for q := range r.Queues {
		except = append(except, q)
	}
	add := func(st queue.JobState, q string, age time.Duration, except []string) {
		if age == queue.KeepForever {
			return
		}
		rules = append(rules, queue.PurgeFilter{State: st, Queue: q, OlderThan: age, ExceptQueues: except, Archive: r.Archive, Limit: retentionBatch})
	}
	add(queue.StateCompleted, "", r.Completed, except)
	add(queue.StateCancelled, "", r.Cancelled, except)
	add(queue.StateFailed, "", r.Failed, except)
	for q, a := range r.Queues {
		add(queue.StateCompleted, q, a.Completed, nil)
		add(queue.StateCancelled, q, a.Cancelled, nil)
		add(queue.StateFailed, q, a.Failed, nil)
	}
	deadline := time.Now().Add(retentionBudget)
	total := 0
	for _, f := range rules {
		for time.Now().Before(deadline) && ctx.Err() == nil {
			start := time.Now()
			n, err := p.Purge(ctx, f)
			if err != nil {
				if ctx.Err() == nil {
					w.log.ErrorContext(ctx, "retention failed", "state", f.State, "queue", f.Queue, "err", err)
				}
				return
			}
			total += n
			w.stats.purged.Add(int64(n)) // per batch, so Stats is current during a long pass
			if n < f.Limit {
				break
			}
			if took := time.Since(start); took > slowBatch {
				sleepCtx(ctx, took)
			}
		}
	}
	if total > 0 {
		w.log.InfoContext(ctx, "retention removed finished jobs", "count", total, "archived", r.Archive)
	}
}

// retentionBatch is how many rows one retention statement deletes; slowBatch
// is how long one may take before retention pauses.
const (
	retentionBatch = 1000
	slowBatch      = 200 * time.Millisecond
)

// listen forwards wake-ups from the backend's notifications, and, from a
// queue.CancelListener, cancels the Handles of jobs an operator cancelled
// (cancel.go). A subscription that fails or ends while the worker runs is
// made again with backoff, so a worker that could not listen at start (the
// role at its connection limit, say) does not poll for the rest of its life.
func (w *Worker) listen(ctx context.Context, n queue.Notifier) {
	cl, cancels := n.(queue.CancelListener)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		var err error
		if cancels {
			var ch <-chan queue.Notice
			if ch, err = cl.Listen(ctx); err == nil {
				backoff = 0
				w.poke(w.wake) // whatever arrived while not listening
				w.renew(ctx)   // and the cancels sent meanwhile
				w.notices(ctx, ch)
				continue
			}
		} else {
			var ch <-chan string
			if ch, err = n.Subscribe(ctx); err == nil {
				backoff = 0
				w.poke(w.wake) // whatever arrived while not listening
				for q := range ch {
					if q == "" || w.serves(q) {
						w.poke(w.wake)
					}
				}
				continue
			}
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
		w.log.WarnContext(ctx, "cannot listen for notifications; polling meanwhile, and trying again", "err", err,
			"retry_in", backoff, "poll_interval", w.cfg.PollInterval)
		if !sleepCtx(ctx, backoff) {
			return
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
