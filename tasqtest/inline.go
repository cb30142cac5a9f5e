package tasqtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// inlineWorker is the worker ID Inline mode claims jobs as.
const inlineWorker = "tasqtest-inline"

// MaxInlineDepth bounds how deeply Inline runs nest when tasks dispatch
// tasks from Handle (with Handle's ctx): a job dispatched deeper is only
// recorded, and the test fails, since a task that dispatches itself would
// otherwise never return.
const MaxInlineDepth = 32

// maxInlineRuns bounds the executions of one job in Inline mode: a job
// handed back for ever (a task that always snoozes) stops there.
const maxInlineRuns = 1000

type depthKey struct{}

// runInline runs job id to its end, attempt after attempt.
func (r *Recorder) runInline(ctx context.Context, id uuid.UUID) {
	r.tb.Helper()
	depth, _ := ctx.Value(depthKey{}).(int)
	if depth >= MaxInlineDepth {
		r.tb.Errorf("tasqtest: Inline: job %s was dispatched by tasks nested %d deep (does a task dispatch itself?); it is only recorded", id, depth)
		return
	}
	// Handle runs as on a worker: with the dispatcher's values, not its
	// cancellation.
	ctx = context.WithValue(context.WithoutCancel(ctx), depthKey{}, depth+1)
	for range maxInlineRuns {
		j := r.claimForInline(id)
		if j == nil {
			return
		}
		o := r.attempt(ctx, j)
		if _, err := r.Finish(ctx, inlineWorker, []queue.Outcome{o}); err != nil {
			r.tb.Errorf("tasqtest: Inline: storing the outcome of job %s: %v", id, err)
			return
		}
		if o.Finishes() {
			return
		}
	}
	r.tb.Errorf("tasqtest: Inline: job %s ran %d times without finishing; it is left as it is", id, maxInlineRuns)
}

// claimForInline claims job id whatever its run time, if it is waiting and
// the registry knows its kind.
func (r *Recorder) claimForInline(id uuid.UUID) *queue.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.jobs[id]
	if !ok {
		return nil
	}
	switch rec.info.State {
	case queue.StateAvailable, queue.StateScheduled, queue.StateRetryable:
	default:
		return nil
	}
	if _, known := r.reg.Config(rec.info.Kind); !known {
		r.tb.Logf("tasqtest: Inline: kind %s is not in the registry; job %s is only recorded", rec.info.Kind, id)
		return nil
	}
	return rec.claim(inlineWorker, 24*time.Hour, time.Now())
}

// attempt runs one attempt of j and returns its outcome, deciding it with
// the rules of package queue as a worker does.
func (r *Recorder) attempt(ctx context.Context, j *queue.Job) queue.Outcome {
	r.tb.Helper()
	meta := queue.Metadata{ID: j.ID, Attempt: j.Attempt - 1, DispatchedAt: j.DispatchedAt, Kind: j.Kind, Queue: j.Queue, MaxRetries: j.MaxRetries}
	x, err := r.prepare(j, meta)
	if err != nil {
		r.tb.Logf("tasqtest: Inline: %s job %s cannot run: %v", j.Kind, j.ID, err)
		return queue.Failed(j, err)
	}
	hctx := ctx
	if j.Timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, j.Timeout)
		defer cancel()
	}
	result, err := r.handle(hctx, x)
	if err == nil {
		return queue.Completed(j, result)
	}
	if j.Timeout > 0 && errors.Is(hctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w after %v: %w", queue.ErrTimeout, j.Timeout, err)
	}
	o := queue.NextOutcome(j, nil, err, func(err error) (bool, time.Duration) {
		if !r.shouldRetry(x, err) {
			return false, 0
		}
		return true, r.retryDelay(x, j, err)
	})
	switch o.State {
	case queue.StateAvailable, queue.StateScheduled:
		r.tb.Logf("tasqtest: Inline: %s job %s snoozed for %v; running it again now", j.Kind, j.ID, o.Delay)
	default:
		r.tb.Logf("tasqtest: Inline: %s job %s attempt %d of %d: %v (now %s)", j.Kind, j.ID, j.Attempt, j.MaxRetries+1, err, o.State)
	}
	if o.State == queue.StateFailed {
		r.runFailed(ctx, x, err)
	}
	return o
}

// prepare decodes the payload; a panicking decoder or factory fails the job.
func (r *Recorder) prepare(j *queue.Job, meta queue.Metadata) (x *queue.Execution, err error) {
	defer func() {
		if p := recover(); p != nil {
			x, err = nil, fmt.Errorf("%w: decoding the payload panicked: %v\n%s", queue.ErrDecode, p, debug.Stack())
		}
	}()
	return r.reg.Prepare(j.Kind, j.Payload, meta)
}

// handle resolves references and runs Handle, turning a panic into an error
// wrapping queue.ErrPanic.
func (r *Recorder) handle(ctx context.Context, x *queue.Execution) (res json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("%w: %v\n%s", queue.ErrPanic, p, debug.Stack())
		}
	}()
	if r.resolver != nil {
		if err := r.resolver.Resolve(ctx, x.Task(), x.Payload()); err != nil {
			return nil, err
		}
	}
	return x.Handle(ctx)
}

// shouldRetry asks the task; a panicking ShouldRetry means retry, as on a worker.
func (r *Recorder) shouldRetry(x *queue.Execution, err error) (retry bool) {
	defer func() {
		if p := recover(); p != nil {
			r.tb.Logf("tasqtest: Inline: ShouldRetry panicked (%v); retrying", p)
			retry = true
		}
	}()
	return x.ShouldRetry(err)
}

// retryDelay is how long a worker would wait before the next attempt (the
// task's NextRetry or Config.Backoff, else the job's retry delay): Inline
// records it as the job's run time but does not wait for it.
func (r *Recorder) retryDelay(x *queue.Execution, j *queue.Job, err error) (d time.Duration) {
	defer func() {
		if p := recover(); p != nil {
			r.tb.Logf("tasqtest: Inline: NextRetry or Backoff panicked (%v); using the job's retry delay", p)
			d = j.RetryDelay
		}
	}()
	return x.RetryDelay(j, err)
}

// runFailed runs the Failed hook; a panic in it is logged, as on a worker.
func (r *Recorder) runFailed(ctx context.Context, x *queue.Execution, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.tb.Logf("tasqtest: Inline: Failed hook panicked: %v", p)
		}
	}()
	x.Failed(ctx, err)
}
