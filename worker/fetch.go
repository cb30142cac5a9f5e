package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// kindSplit is the registered kinds, split by the pool they run on: a worker
// claims blocking kinds only while a blocking slot is free, so it never
// claims work it would have to hand back.
type kindSplit struct {
	normal, blocking []string
}

func newKindSplit(reg *queue.Registry, kinds []string) kindSplit {
	var ks kindSplit
	for _, k := range kinds {
		if cfg, ok := reg.Config(k); ok && cfg.Blocking {
			ks.blocking = append(ks.blocking, k)
		} else {
			ks.normal = append(ks.normal, k)
		}
	}
	return ks
}

// claimTimeout bounds one claim statement.
const claimTimeout = 30 * time.Second

// fetchLoop claims jobs while there are free slots, waking on notifications,
// freed slots and the poll tick. A failed claim is retried with a backoff
// that starts short, so a blip costs milliseconds, not a poll interval.
func (w *Worker) fetchLoop(ctx context.Context, stop context.CancelFunc, bg context.Context, ks kindSplit) {
	poll := time.NewTicker(w.cfg.PollInterval)
	defer poll.Stop()
	backlog := true // look for work at once on start
	var lastFetch time.Time
	backoff := time.Duration(0)
	for {
		if w.cfg.MaxTasks > 0 && w.claimed.Load() >= int64(w.cfg.MaxTasks) {
			return
		}
		if backoff > 0 {
			if !sleepCtx(ctx, backoff) {
				return
			}
		} else if !backlog {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			case <-poll.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		if wait := w.cfg.FetchCooldown - time.Since(lastFetch); wait > 0 {
			time.Sleep(wait)
		}
		free, freeBlocking := w.execs.free(w.cfg.BlockingConcurrency)
		if w.cfg.MaxTasks > 0 {
			free = min(free, w.cfg.MaxTasks-int(w.claimed.Load()))
			freeBlocking = min(freeBlocking, free)
		}
		if free <= 0 {
			// Full: wait for a slot, a stop, or the poll tick.
			select {
			case <-ctx.Done():
				return
			case <-w.slotFreed:
			case <-poll.C:
			}
			backlog = true
			continue
		}
		lastFetch = time.Now()
		backlog = false
		full, err := w.claimRound(bg, ks, free, freeBlocking)
		switch {
		case err == nil:
			backoff = 0
			backlog = full
		case errors.Is(err, queue.ErrNotMigrated):
			w.log.ErrorContext(ctx, "the backend has no TasQ schema; stopping the worker", "err", err)
			w.stop(fmt.Errorf("worker: claim: %w", err))
			stop()
			return
		default:
			backoff = nextBackoff(backoff, w.cfg.PollInterval)
			w.log.ErrorContext(ctx, "claim failed; retrying", "err", err, "retry_in", backoff)
		}
	}
}

// nextBackoff doubles d from 10ms, up to limit.
func nextBackoff(d, limit time.Duration) time.Duration {
	if d <= 0 {
		return min(10*time.Millisecond, limit)
	}
	return min(2*d, limit)
}

// claimRound walks the queues in priority order, claiming into the free
// slots. It reports whether the slots were filled (more work is likely).
func (w *Worker) claimRound(bg context.Context, ks kindSplit, free, freeBlocking int) (full bool, err error) {
	for _, q := range w.cfg.Queues {
		if freeBlocking > 0 && len(ks.blocking) > 0 {
			n, err := w.claimInto(bg, q, ks.blocking, min(freeBlocking, free), true)
			if err != nil {
				return false, err
			}
			free, freeBlocking = free-n, freeBlocking-n
		}
		if free > 0 && len(ks.normal) > 0 {
			n, err := w.claimInto(bg, q, ks.normal, free, false)
			if err != nil {
				return false, err
			}
			free -= n
			freeBlocking = min(freeBlocking, free)
		}
		if free == 0 {
			return true, nil
		}
	}
	return false, nil
}

// claimInto reserves limit slots, claims up to limit jobs of kinds from q,
// starts them, and releases the slots it did not use.
func (w *Worker) claimInto(bg context.Context, q string, kinds []string, limit int, blocking bool) (int, error) {
	w.execs.reserve(limit, blocking)
	// The claim runs on bg, not on Run's ctx: a claim cancelled halfway
	// could commit server-side and strand its rows until their leases expire.
	ctx, cancel := context.WithTimeout(bg, claimTimeout)
	t0 := w.observeStart()
	jobs, err := w.src.Claim(ctx, queue.ClaimRequest{Queue: q, WorkerID: w.cfg.ID, Limit: limit, Lease: w.cfg.LeaseDuration, Kinds: kinds,
		Meta: len(w.cfg.Middleware) > 0})
	cancel()
	w.observeClaim(q, len(jobs), t0, err)
	if err != nil {
		w.execs.release(limit, blocking)
		return 0, err
	}
	if len(jobs) > limit {
		// A backend that returns more than asked breaks the slot cap; run
		// what fits and hand the rest back.
		for _, j := range jobs[limit:] {
			w.log.ErrorContext(bg, "backend returned more jobs than asked; handing back", "job_id", j.ID)
			w.handBack(j, 0, "claimed beyond the limit")
		}
		jobs = jobs[:limit]
	}
	w.execs.release(limit-len(jobs), blocking)
	for _, j := range jobs {
		w.start(j, blocking) // in the slot reserved for its pool
	}
	return len(jobs), nil
}

// claimed is a job on its way to an executor, decoded already.
type claimed struct {
	x   *execution
	run *queue.Execution
	err error // why the job cannot run (unreadable row, unknown kind, undecodable payload)
}

// metadataOf is the metadata a task sees of the attempt of j.
func metadataOf(j *queue.Job) queue.Metadata {
	return queue.Metadata{ID: j.ID, Attempt: j.Attempt - 1, DispatchedAt: j.DispatchedAt, Kind: j.Kind, Queue: j.Queue, MaxRetries: j.MaxRetries}
}

// start hands a claimed job, in its reserved slot, to an executor. The
// payload is decoded here, on the fetch loop's goroutine, whose stack has
// grown to fit the decoder once: decoding on many executors' small stacks
// costs a stack copy per job.
func (w *Worker) start(j *queue.Job, blocking bool) {
	w.claimed.Add(1)
	x, ok := w.execs.add(j, blocking)
	if !ok {
		// This worker lost the job's claim while its Handle still runs and
		// has claimed it again: never run two executions of one job at once.
		w.execs.release(1, blocking)
		w.poke(w.slotFreed)
		w.log.WarnContext(w.jobCtx, "job claimed again while its previous execution still runs here; handing it back",
			"job_id", j.ID, "kind", j.Kind, "token", j.Token)
		w.handBack(j, queue.HandBackDelay, "previous execution still running")
		return
	}
	w.jobs.Add(1)
	c := claimed{x: x}
	if j.Invalid != nil {
		c.err = j.Invalid
	} else {
		c.run, c.err = w.prepare(j, metadataOf(j))
	}
	w.ready <- c
	w.grow() // pool.go
}

// prepare decodes the payload; a user type's UnmarshalJSON that panics
// fails this job alone.
func (w *Worker) prepare(j *queue.Job, meta queue.Metadata) (x *queue.Execution, err error) {
	defer func() {
		if p := recover(); p != nil {
			x, err = nil, fmt.Errorf("%w: decoding the payload panicked: %v\n%s", queue.ErrDecode, p, debug.Stack())
		}
	}()
	return w.reg.Prepare(j.Kind, j.Payload, meta)
}

// handBack returns a claimed job that never started.
func (w *Worker) handBack(j *queue.Job, delay time.Duration, why string) {
	w.stats.handedBack.Add(1)
	w.log.DebugContext(w.jobCtx, "handing back a claimed job", "job_id", j.ID, "why", why)
	w.send(queue.HandBack(j, delay))
}
