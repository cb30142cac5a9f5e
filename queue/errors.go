package queue

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrNotATask means a value passed to Dispatch or Register has no
	// Handle(context.Context) (R, error) method.
	ErrNotATask = errors.New("tasq: not a task")
	// ErrInvalidConfig means a task's Config or a dispatch option is out of range.
	ErrInvalidConfig = errors.New("tasq: invalid task configuration")
	// ErrDuplicateKind means a kind was registered twice.
	ErrDuplicateKind = errors.New("tasq: task kind already registered")
	// ErrUnknownKind means a job names a kind the worker's registry does not know.
	ErrUnknownKind = errors.New("tasq: unknown task kind")
	// ErrDecode means a job's payload could not be decoded into its task type.
	ErrDecode = errors.New("tasq: cannot decode job payload")
	// ErrUnknownDriver means a task asks for a driver the client was not given.
	ErrUnknownDriver = errors.New("tasq: unknown driver")
	// ErrTxUnsupported means the adapter cannot dispatch inside the given
	// transaction type (or inside any transaction at all).
	ErrTxUnsupported = errors.New("tasq: transactional dispatch not supported for this transaction type")
	// ErrInvalidPayload means a task's fields cannot travel as a payload
	// unchanged (invalid UTF-8, a NUL character); nothing was stored.
	ErrInvalidPayload = errors.New("tasq: task cannot be sent as a payload")
	// ErrMixedBatch means one DispatchMany call held tasks for different
	// drivers; a batch is all or none, which only one backend can promise.
	ErrMixedBatch = errors.New("tasq: tasks of one batch go to different drivers")
	// ErrNotMigrated means the backend's schema is missing; run `tasq migrate up`.
	ErrNotMigrated = errors.New("tasq: schema not migrated; run `tasq migrate up` (or migrations.Up) first")
	// ErrJobNotFound means no job has the given ID.
	ErrJobNotFound = errors.New("tasq: job not found")
	// ErrJobState means an operation does not apply to a job in its current state.
	ErrJobState = errors.New("tasq: operation not allowed in the job's current state")
	// ErrTimeout is wrapped in the error of an attempt that ran past its task's Timeout.
	ErrTimeout = errors.New("tasq: task timed out")
	// ErrPanic is wrapped in the error of an attempt whose Handle panicked.
	ErrPanic = errors.New("tasq: task panicked")
	// ErrLeaseExpired is the error given to Failed when a job's last attempt was
	// lost because its worker stopped renewing the lease (crashed or was killed).
	ErrLeaseExpired = errors.New("tasq: lease expired before the attempt finished")
	// ErrNoDefaultClient means a package-level Dispatch ran before SetDefault.
	ErrNoDefaultClient = errors.New("tasq: no default client; call queue.SetDefault first")
)

// PermanentError marks an error that is not worth retrying. A worker fails
// the job at once unless the task's own ShouldRetry says otherwise (a task's
// RetryDecider always has the last word). Create one with Permanent.
type PermanentError struct{ Err error }

// Permanent wraps err so that, by default, the job is not retried.
// Permanent(nil) is still an error: the attempt fails, for good.
func Permanent(err error) error { return &PermanentError{Err: err} }

func (e *PermanentError) Error() string {
	if e == nil || e.Err == nil {
		return "permanent failure (no error given)"
	}
	return e.Err.Error()
}

func (e *PermanentError) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// IsPermanent reports whether err, or an error it wraps, is a PermanentError.
// An error whose Unwrap or As method panics is not permanent.
func IsPermanent(err error) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	var p *PermanentError
	return errors.As(err, &p)
}

// CancelError, returned (wrapped or not) from Handle, moves the job to the
// cancelled state at once: no retry, no Failed hook. Create one with Cancel.
type CancelError struct{ Err error }

// Cancel wraps err so that returning it from Handle cancels the job.
func Cancel(err error) error { return &CancelError{Err: err} }

func (e *CancelError) Error() string {
	if e == nil || e.Err == nil {
		return "job cancelled by task"
	}
	return fmt.Sprintf("job cancelled by task: %v", e.Err)
}

func (e *CancelError) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// SnoozeError, returned (wrapped or not) from Handle, puts the job back to
// run again after Delay without spending an attempt: no retry is used up,
// no error is added to the job's history, ShouldRetry is not asked and the
// Failed hook does not run, even on the job's last attempt. Create one with
// Snooze.
type SnoozeError struct {
	// Delay is how long the job waits before it can run again. Zero or less
	// means at once; more than MaxRescheduleDelay is cut to it.
	Delay time.Duration
}

// Snooze returns an error that, returned from Handle, reschedules the job
// d from now without counting the attempt: the next run sees the same
// Attempt(). Snooze(0) (or a negative d) makes the job available again at
// once, so a task that always snoozes 0 runs in a loop; give a delay to
// wait for something. A job can snooze any number of times.
//
//	if !limiter.Allow() {
//		return nil, queue.Snooze(30 * time.Second)
//	}
func Snooze(d time.Duration) error { return &SnoozeError{Delay: d} }

func (e *SnoozeError) Error() string {
	if e == nil {
		return "job snoozed"
	}
	return fmt.Sprintf("job snoozed for %v", e.Delay)
}

// IsSnooze reports whether err, or an error it wraps, is a SnoozeError. An
// error whose Unwrap or As method panics is not.
func IsSnooze(err error) bool {
	_, ok := snoozeOf(err)
	return ok
}

// snoozeOf returns the delay of the SnoozeError err is or wraps, cut to
// [0, MaxRescheduleDelay] (a nil *SnoozeError snoozes for 0).
func snoozeOf(err error) (d time.Duration, ok bool) {
	defer func() {
		if recover() != nil {
			d, ok = 0, false
		}
	}()
	var se *SnoozeError
	if !errors.As(err, &se) {
		return 0, false
	}
	if se == nil {
		return 0, true
	}
	return rescheduleDelay(se.Delay), true
}
