package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// executor runs claimed jobs one after another until the fetch loop ends.
// Executors live as long as the worker, so a job costs no goroutine start.
// Handle runs on the executor itself: its slot stays taken until it returns,
// even when it ignores its timeout, so Concurrency is a hard cap.
func (w *Worker) executor(jobCtx context.Context) {
	for {
		w.idle.Add(1)
		c, ok := <-w.ready
		w.idle.Add(-1)
		if !ok {
			return
		}
		o, send := w.execute(jobCtx, c)
		held := w.execs.returned(c.x)
		w.poke(w.slotFreed)
		switch {
		case send && held:
			w.send(o)
		case send:
			w.stats.stale.Add(1) // its claim was lost meanwhile; the backend would refuse it
		case held:
			// Nothing to write (the job's transaction completed it): forget it.
			w.execs.settle(queue.Outcome{ID: c.x.lease.ID, Token: c.x.lease.Token})
		}
		w.jobs.Done()
	}
}

// errLeaseLost is the cause of a Handle's context cancelled because the
// worker learned that the job's claim is no longer its own.
var errLeaseLost = errors.New("worker: the job's claim was lost (lease expired and rescued, or cancelled by an operator)")

// execute runs one attempt and decides its outcome with the rules of package
// queue. send is false when there is nothing to write.
func (w *Worker) execute(jobCtx context.Context, c claimed) (o queue.Outcome, send bool) {
	j := c.x.job
	log := jobLogger{w.log, jobCtx, j}
	if c.err != nil {
		// Bad input: this one job fails with the reason; the worker goes on.
		log.Error("job cannot run; marking it failed", "err", errText(c.err))
		return w.failEarly(jobCtx, j, nil, c.err, log), true
	}
	x := c.run
	if queue.Exhausted(j) {
		// The last attempt was lost with its worker; nothing is left to try.
		err := fmt.Errorf("%w: the last of %d attempts did not finish", queue.ErrLeaseExpired, j.MaxRetries+1)
		return w.failEarly(jobCtx, j, x, err, log), true
	}

	hctx, cancel := context.WithCancelCause(jobCtx)
	defer cancel(nil)
	var deadline time.Time
	if j.Timeout > 0 {
		deadline = time.Now().Add(j.Timeout)
		var cancelT context.CancelFunc
		hctx, cancelT = context.WithDeadline(hctx, deadline)
		defer cancelT()
	}
	var txc *queue.TxCompletion // set when the backend can complete jobs in a transaction
	if w.txc != nil {
		txc = x.EnableTxCompletion(w.txc, w.cfg.ID, j)
	}
	if !w.execs.started(c.x, cancel, deadline) {
		return o, false // lost before it started: another execution has it
	}
	var at *queue.Attempt // set when attempt middleware runs
	txDone := false       // the job's own transaction completed it
	w.pool.entered.Add(1) // pool.go sizes the executors by these two
	result, err := w.run(hctx, j, x, &at, &log.ctx)
	w.pool.returned.Add(1)
	if at != nil {
		defer func() { w.finish(log.ctx, at, o, err, !send && !txDone) }()
	}

	if txc != nil && txc.Used() {
		// Handle completed its job in a transaction of its own (CompleteTx):
		// the outcome is written if, and only if, that transaction committed.
		if settled, completed := w.txSettled(jobCtx, w.txc, j, err, log); settled {
			txDone = completed // otherwise the claim was lost: dropped
			return queue.Completed(j, nil), false
		}
		if err == nil {
			err = queue.ErrTxNotCommitted
		}
	}
	if err == nil {
		return queue.Completed(j, result), true
	}
	switch cause := context.Cause(hctx); {
	case errors.Is(cause, errLeaseLost):
		log.Warn("job's claim was lost while it ran; its outcome is dropped", "err", errText(err))
		return o, false
	case w.stopping.Load() && errors.Is(cause, errShutdown):
		// Cancelled by shutdown: hand back; the attempt does not count.
		log.Warn("job interrupted by shutdown; handing it back")
		w.stats.handedBack.Add(1)
		return queue.HandBack(j, 0), true
	}
	if j.Timeout > 0 && errors.Is(hctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w after %v: %w", queue.ErrTimeout, j.Timeout, err)
	}
	o = queue.NextOutcome(j, nil, err, func(err error) (bool, time.Duration) {
		if !w.shouldRetry(x, err, log) {
			return false, 0
		}
		return true, w.retryDelay(x, j, err, log)
	})
	switch o.State {
	case queue.StateCancelled:
		log.Info("job cancelled by its task", "err", errText(err))
	case queue.StateAvailable, queue.StateScheduled:
		log.Debug("job snoozed by its task; the attempt does not count", "snooze", o.Delay)
		w.stats.snoozed.Add(1)
	case queue.StateRetryable:
		log.Warn("attempt failed; will retry", "err", o.Error, "retry_in", o.Delay)
	default:
		log.Error("job failed", "err", o.Error)
		w.runFailed(jobCtx, log.ctx, x, err, log)
	}
	return o, true
}

// failEarly fails j, which cannot run (bad input) or has no attempt left
// (its last one was lost with its worker), with err, without calling
// Handle. The attempt middleware still sees the attempt, as one whose
// Handle returned err at once, and its outcome, so that metrics and traces
// count every job that ends; the Failed hook (when the task could be
// decoded: x is not nil) runs inside it, as it does for a failed Handle.
func (w *Worker) failEarly(jobCtx context.Context, j *queue.Job, x *queue.Execution, err error, log jobLogger) (o queue.Outcome) {
	o = queue.Failed(j, err)
	if len(w.cfg.Middleware) == 0 {
		w.runFailed(jobCtx, jobCtx, x, err, log)
		return o
	}
	md := metadataOf(j)
	if x != nil {
		md = x.Meta
	}
	a := queue.NewAttempt(j, md)
	mwCtx := jobCtx
	func() {
		defer func() {
			if p := recover(); p != nil {
				log.Error("attempt middleware panicked around a job that cannot run", "panic", fmt.Sprint(p))
			}
		}()
		_, _ = queue.ChainAttempt(w.cfg.Middleware, a, func(ctx context.Context) (json.RawMessage, error) {
			mwCtx = ctx
			return nil, err
		})(jobCtx)
	}()
	w.runFailed(jobCtx, mwCtx, x, err, log)
	w.finish(mwCtx, a, o, err, false)
	return o
}

// txSettled asks the backend whether the transaction in which Handle called
// CompleteTx committed the job's completion. When it cannot tell (the
// database is unreachable), it says no: the attempt's outcome is then
// written through the completion guard, which refuses it if the
// transaction did commit, and applies it if it did not.
func (w *Worker) txSettled(jobCtx context.Context, tc queue.TxCompleter, j *queue.Job, handleErr error, log jobLogger) (settled, completed bool) {
	ctx, cancel := context.WithTimeout(jobCtx, finishTimeout)
	defer cancel()
	settled, completed, err := tc.Settled(ctx, w.cfg.ID, j.Lease())
	switch {
	case err != nil:
		log.Warn("cannot tell whether the job's transaction (CompleteTx) committed; writing the attempt's outcome, which applies only if it did not", "err", errText(err))
		return false, false
	case !settled && handleErr == nil:
		log.Warn("Handle called CompleteTx and returned nil, but its transaction did not commit; the attempt counts as failed")
		return false, false
	case !settled:
		return false, false
	case !completed:
		// The claim was lost meanwhile (rescued, cancelled, retried,
		// deleted): the transaction could not have committed a completion.
		log.Warn("job's claim was lost while it ran; nothing to write", "handle_err", errText(handleErr))
		w.stats.stale.Add(1)
		return true, false
	}
	if handleErr != nil {
		log.Warn("Handle returned an error after its transaction completed the job; the job stays completed", "err", errText(handleErr))
	}
	w.stats.completed.Add(1)
	return true, true
}

// run runs the attempt through the worker's attempt middleware, if any; a
// panic in a middleware is an error wrapping queue.ErrPanic, as one in
// Handle is.
//
// The context the middleware handed to Handle goes to *logCtx, so that the
// attempt's log lines carry what the middleware put there (a span).
func (w *Worker) run(ctx context.Context, j *queue.Job, x *queue.Execution, at **queue.Attempt, logCtx *context.Context) (res json.RawMessage, err error) {
	if len(w.cfg.Middleware) == 0 {
		return w.attempt(ctx, x)
	}
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("%w: in attempt middleware: %v\n%s", queue.ErrPanic, p, debug.Stack())
		}
	}()
	a := queue.NewAttempt(j, x.Meta)
	*at = a
	return queue.ChainAttempt(w.cfg.Middleware, a, func(ctx context.Context) (json.RawMessage, error) {
		*logCtx = ctx
		return w.attempt(ctx, x)
	})(ctx)
}

// finish tells the attempt middleware the decided outcome.
func (w *Worker) finish(ctx context.Context, a *queue.Attempt, o queue.Outcome, err error, dropped bool) {
	defer func() {
		if p := recover(); p != nil {
			w.log.ErrorContext(ctx, "attempt middleware's AfterOutcome panicked", "job_id", a.Job.ID, "panic", fmt.Sprint(p))
		}
	}()
	a.Finish(queue.AttemptOutcome{Outcome: o, Err: err, Dropped: dropped})
}

// attempt resolves the task's references and runs Handle (which encodes the
// result), turning a panic anywhere in user code into an error wrapping
// queue.ErrPanic.
func (w *Worker) attempt(ctx context.Context, x *queue.Execution) (res json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("%w: %v\n%s", queue.ErrPanic, p, debug.Stack())
		}
	}()
	if w.cfg.Resolver != nil {
		if err := w.cfg.Resolver.Resolve(ctx, x.Task(), x.Payload()); err != nil {
			return nil, err
		}
	}
	return x.Handle(ctx)
}

func (w *Worker) shouldRetry(x *queue.Execution, err error, log jobLogger) (retry bool) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("ShouldRetry panicked; retrying", "panic", fmt.Sprint(r))
			retry = true
		}
	}()
	return x.ShouldRetry(err)
}

// retryDelay asks the task (NextRetry, Config.Backoff) how long the failed
// attempt of j waits; a panic there falls back to the fixed retry delay.
func (w *Worker) retryDelay(x *queue.Execution, j *queue.Job, err error, log jobLogger) (d time.Duration) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("NextRetry or Backoff panicked; retrying after the job's retry delay", "panic", fmt.Sprint(r), "retry_in", j.RetryDelay)
			d = j.RetryDelay
		}
	}()
	return x.RetryDelay(j, err)
}

// runFailed runs the task's Failed hook, if any, under FailedHookTimeout.
// Its context carries the values of valuesCtx (the attempt middleware's
// context, such as its span, so that the hook's work shows inside the
// attempt) but ends only with jobCtx or the timeout: the attempt's own
// deadline, which may have passed, does not cut the hook short.
func (w *Worker) runFailed(jobCtx, valuesCtx context.Context, x *queue.Execution, err error, log jobLogger) {
	if x == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(valuesCtx), w.cfg.FailedHookTimeout)
	defer cancel()
	stop := context.AfterFunc(jobCtx, cancel)
	defer stop()
	defer func() {
		if r := recover(); r != nil {
			log.Error("Failed hook panicked", "panic", fmt.Sprint(r))
		}
	}()
	x.Failed(ctx, err)
}
