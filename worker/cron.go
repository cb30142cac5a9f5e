package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// CronConfig says how a worker fires periodic jobs (queue.Schedule) on
// backends that keep them (queue.ScheduleFirer).
//
// Every worker fires, not only the maintenance leader: a due schedule is
// claimed by one firer, which stores its job and its next tick in one
// transaction, so firing from many workers dispatches each tick once and
// needs no election. A tick is then late by at most Interval while any
// worker runs, also while a dead leader's term runs out.
type CronConfig struct {
	// Interval is how often the worker looks for due schedules; a tick
	// fires up to Interval after its time. Default 1s.
	Interval time.Duration
	// Disabled keeps this worker from firing schedules. The schedules still
	// fire while any other worker runs.
	Disabled bool
}

func (c CronConfig) withDefaults() (CronConfig, error) {
	if c.Interval < 0 {
		return c, fmt.Errorf("worker: Cron.Interval is %v; it must not be negative", c.Interval)
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	return c, nil
}

// fireSchedules fires the backend's due schedules every Cron.Interval
// until ctx is done.
func (w *Worker) fireSchedules(ctx context.Context, f queue.ScheduleFirer) {
	t := time.NewTicker(w.cfg.Cron.Interval)
	defer t.Stop()
	failing := false
	for {
		fired, err := f.FireSchedules(ctx, time.Time{})
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				w.log.ErrorContext(ctx, "firing schedules failed; trying again", "err", err, "interval", w.cfg.Cron.Interval)
			}
			failing = true
		case err == nil:
			if failing {
				w.log.InfoContext(ctx, "firing schedules works again")
			}
			failing = false
		}
		w.logFired(ctx, fired)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// logFired logs what firing did and wakes the fetch loop when a job went
// to one of this worker's queues (its notification would too, a moment
// later).
func (w *Worker) logFired(ctx context.Context, fired []queue.FiredSchedule) {
	for _, f := range fired {
		switch {
		case f.Err != nil:
			w.log.ErrorContext(ctx, "schedule cannot tick until it is changed or resumed", "schedule", f.Name, "err", f.Err)
		case f.Missed && len(f.JobIDs) > len(f.Ticks):
			w.log.WarnContext(ctx, "schedule missed ticks; one job runs for them", "schedule", f.Name, "jobs", len(f.JobIDs), "next", f.Next)
		case f.Missed:
			w.log.WarnContext(ctx, "schedule missed ticks; skipped them", "schedule", f.Name, "jobs", len(f.JobIDs), "next", f.Next)
		case len(f.JobIDs) > 0:
			w.log.DebugContext(ctx, "schedule fired", "schedule", f.Name, "jobs", len(f.JobIDs), "next", f.Next)
		}
		if len(f.JobIDs) > 0 {
			w.poke(w.wake)
		}
	}
}

// startCron starts the schedule firer on loops when the backend has one and
// this worker fires.
func (w *Worker) startCron(ctx context.Context, loops interface{ Go(func()) }) {
	if f, ok := w.src.(queue.ScheduleFirer); ok && !w.cfg.Cron.Disabled {
		loops.Go(func() { w.fireSchedules(ctx, f) })
	}
}
