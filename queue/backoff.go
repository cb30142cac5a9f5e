package queue

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// How long a job waits before its next attempt. The default is the guide's
// fixed retry delay: the job's RetryDelay (Config.RetryDelay, or RetryAfter
// at dispatch), whatever the attempt. A task can choose a Backoff in its
// Config (Exponential, or a type of its own), or decide per error with a
// NextRetry method (RetryScheduler), which wins over Config.Backoff.

// MaxRescheduleDelay is the longest a task can put its job off at run time:
// a delay from NextRetry, a Backoff or Snooze that is longer is cut to it,
// and one below zero becomes zero (run again at once). Dispatch-time
// delays (Config.RetryDelay, RetryAfter, Delay) are not cut.
const MaxRescheduleDelay = 365 * 24 * time.Hour

// DefaultBackoffMax is the cap of an Exponential backoff whose Max is 0.
const DefaultBackoffMax = 24 * time.Hour

// Backoff chooses the wait before a failed job's next attempt. Set one as
// Config.Backoff; nil means the fixed retry delay. It is the worker's
// choice, not the dispatcher's: a worker uses the Backoff of the task type
// it registered, so changing it affects jobs already queued.
type Backoff interface {
	// Delay returns the wait after the failed attempt number attempt,
	// counted as Metadata.Attempt counts it (0 for the first attempt, 1 for
	// the first retry). base is the job's retry delay: Config.RetryDelay,
	// or the dispatch's RetryAfter. A result below zero means no wait; one
	// above MaxRescheduleDelay is cut to it. Delay is called from many
	// workers' goroutines at once, so it must be safe for concurrent use.
	Delay(attempt int, base time.Duration) time.Duration
}

// RetryScheduler is implemented by tasks that choose the wait before each
// retry themselves, for example from a rate limit's Retry-After. NextRetry
// wins over Config.Backoff. It is called only when the attempt will be
// retried (retries are left and ShouldRetry agreed); attempt is the failed
// attempt's number, as TaskBase.Attempt counts it (0 for the first), and
// err its error. A result below zero means retry at once; one above
// MaxRescheduleDelay is cut to it. A NextRetry that panics is logged and the
// job retries after its fixed retry delay.
type RetryScheduler interface {
	NextRetry(attempt int, err error) time.Duration
}

// Exponential is a Backoff whose delay doubles with each attempt: Base
// after the first attempt, 2×Base after the second, 4×Base after the
// third, and so on, never more than Max. Jitter spreads retries of jobs
// that failed together (an outage) so that they do not all come back at
// once. The zero value doubles the job's retry delay up to
// DefaultBackoffMax, with no jitter.
//
//	func (*CallAPI) Config() queue.Config {
//		return queue.Config{MaxRetries: 8, Backoff: queue.Exponential{Base: time.Second, Max: 10 * time.Minute, Jitter: 0.2}}
//	}
type Exponential struct {
	// Base is the wait after the first attempt. 0 means the job's retry
	// delay (Config.RetryDelay, or the dispatch's RetryAfter).
	Base time.Duration
	// Max caps the wait. 0 means DefaultBackoffMax. It may not exceed
	// MaxRescheduleDelay.
	Max time.Duration
	// Jitter is the part of each wait that is random, from 0 (none) to 1
	// ("full jitter"): the wait d becomes a value drawn uniformly from
	// [d×(1−Jitter), d]. Jitter never makes a wait longer.
	Jitter float64
}

// Delay implements Backoff, drawing the jitter from math/rand/v2.
func (e Exponential) Delay(attempt int, base time.Duration) time.Duration {
	if e.Jitter <= 0 {
		return e.DelayWith(attempt, base, 0)
	}
	return e.DelayWith(attempt, base, rand.Float64())
}

// DelayWith is Delay with the random number given: r, in [0, 1), picks the
// wait within the jitter range, 0 giving the longest. It is a pure
// function, for tests and for tasks that draw their own randomness. An r
// outside [0, 1) (or NaN) is taken as 0.
func (e Exponential) DelayWith(attempt int, base time.Duration, r float64) time.Duration {
	maxD := e.Max
	if maxD <= 0 {
		maxD = DefaultBackoffMax
	}
	maxD = min(maxD, MaxRescheduleDelay)
	d := e.Base
	if d <= 0 {
		d = base
	}
	d = min(max(d, 0), maxD)
	d = doubled(d, max(attempt, 0), maxD)
	jitter := e.Jitter
	if !(jitter > 0) || !(r > 0 && r < 1) { // also catches NaN
		return d
	}
	jitter = min(jitter, 1)
	// d is at most MaxRescheduleDelay (about 3.2e16 ns), so the product is
	// at most d and converts back to a Duration without overflow.
	return d - time.Duration(float64(d)*jitter*r)
}

// doubled returns d×2^n, or limit when that is larger; d <= limit. It
// never overflows, however large n is.
func doubled(d time.Duration, n int, limit time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	for ; n > 0; n-- {
		if d > limit/2 {
			return limit
		}
		d *= 2
	}
	return d
}

// check reports whether e can be a task's Backoff, naming the field at fault.
func (e Exponential) check() error {
	maxD := e.Max
	switch {
	case e.Base < 0:
		return fmt.Errorf("%w: Backoff.Base is %v; use a positive duration, or 0 for the job's retry delay", ErrInvalidConfig, e.Base)
	case e.Max < 0:
		return fmt.Errorf("%w: Backoff.Max is %v; use a positive duration, or 0 for the default (%v)", ErrInvalidConfig, e.Max, DefaultBackoffMax)
	case e.Max > MaxRescheduleDelay:
		return fmt.Errorf("%w: Backoff.Max is %v; the limit is %v (queue.MaxRescheduleDelay)", ErrInvalidConfig, e.Max, MaxRescheduleDelay)
	case maxD == 0:
		maxD = DefaultBackoffMax
	}
	if e.Base > maxD {
		return fmt.Errorf("%w: Backoff.Base (%v) is above Backoff.Max (%v), so every wait would be Max; lower Base or raise Max", ErrInvalidConfig, e.Base, maxD)
	}
	if math.IsNaN(e.Jitter) || e.Jitter < 0 || e.Jitter > 1 {
		return fmt.Errorf("%w: Backoff.Jitter is %v; use a fraction from 0 (no jitter) to 1 (full jitter)", ErrInvalidConfig, e.Jitter)
	}
	return nil
}

// checkBackoff checks a Config's Backoff: nil (fixed delay) is fine, a nil
// pointer is not, and an Exponential must have fields in range.
func checkBackoff(b Backoff) error {
	if b == nil {
		return nil
	}
	if isNil(b) {
		return fmt.Errorf("%w: Backoff is a nil %T; leave it unset for the fixed retry delay", ErrInvalidConfig, b)
	}
	switch e := b.(type) {
	case Exponential:
		return e.check()
	case *Exponential:
		return e.check()
	}
	return nil
}

// rescheduleDelay cuts a delay a task chose at run time to
// [0, MaxRescheduleDelay].
func rescheduleDelay(d time.Duration) time.Duration {
	return min(max(d, 0), MaxRescheduleDelay)
}

// RetryDelay returns how long the failed attempt j of this execution waits
// before the next one, err being its error: the task's NextRetry if it has
// one, else Config.Backoff's Delay, else the job's fixed retry delay
// (j.RetryDelay), unchanged. Computed delays are kept within
// [0, MaxRescheduleDelay]. A panic in NextRetry or Delay is not recovered
// here; workers recover it and fall back to j.RetryDelay.
func (x *Execution) RetryDelay(j *Job, err error) time.Duration {
	attempt := max(j.Attempt-1, 0) // Job.Attempt counts from 1, Metadata.Attempt from 0
	if s, ok := x.task.(RetryScheduler); ok {
		return rescheduleDelay(s.NextRetry(attempt, err))
	}
	if x.Config.Backoff != nil {
		return rescheduleDelay(x.Config.Backoff.Delay(attempt, j.RetryDelay))
	}
	return j.RetryDelay
}
