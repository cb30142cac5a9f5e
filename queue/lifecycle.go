package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The lifecycle rules live here, in one copy: which outcome follows the end
// of an attempt, and what each outcome does to a job. Workers decide with
// NextOutcome and the constructors; adapters apply an Outcome with its
// methods (Finishes, Counts, RunsAgain) and decide nothing themselves.

// MaxErrorLength bounds the error text stored for one attempt, in bytes.
// Longer text is cut at a character boundary and marked as cut.
const MaxErrorLength = 8 << 10

// MaxResultSize bounds a completed job's stored result, in bytes.
const MaxResultSize = 16 << 20

// MaxErrorHistory bounds a job's error history: once it is longer, the
// first entry and the newest MaxErrorHistory-1 entries are kept and the
// entries between them are dropped (adapters keep the count of dropped ones).
const MaxErrorHistory = 20

// HandBackDelay is how long a job handed back because it could not start
// (its worker's blocking pool was full, another execution of it still runs
// here) waits before it can be claimed again.
const HandBackDelay = 500 * time.Millisecond

// Completed is the outcome of an attempt of j whose Handle returned result.
// A result that cannot be stored (see CheckResult) fails the job instead,
// with the reason.
func Completed(j *Job, result json.RawMessage) Outcome {
	if err := CheckResult(result); err != nil {
		return Outcome{ID: j.ID, Token: j.Token, State: StateFailed,
			Error: CleanErrorText("the result of Handle cannot be stored: " + err.Error())}
	}
	return Outcome{ID: j.ID, Token: j.Token, State: StateCompleted, Result: result}
}

// Failed is the outcome that fails j for good with err's text.
func Failed(j *Job, err error) Outcome {
	return Outcome{ID: j.ID, Token: j.Token, State: StateFailed, Error: ErrorText(err)}
}

// Cancelled is the outcome that cancels j with err's text.
func Cancelled(j *Job, err error) Outcome {
	return Outcome{ID: j.ID, Token: j.Token, State: StateCancelled, Error: ErrorText(err)}
}

// Retry is the outcome that runs j again after its fixed retry delay.
func Retry(j *Job, err error) Outcome { return RetryIn(j, err, j.RetryDelay) }

// RetryIn is the outcome that runs j again delay from now (at once when
// delay is not positive), with err's text in its error history.
func RetryIn(j *Job, err error, delay time.Duration) Outcome {
	return Outcome{ID: j.ID, Token: j.Token, State: StateRetryable, Error: ErrorText(err), Delay: max(delay, 0)}
}

// HandBack is the outcome that returns j unfinished, without counting the
// attempt: available at once when delay is 0 or less, else scheduled delay
// later. A worker hands back a job that could not start or was interrupted
// by its shutdown, and one whose task returned Snooze.
func HandBack(j *Job, delay time.Duration) Outcome {
	if delay <= 0 {
		return Outcome{ID: j.ID, Token: j.Token, State: StateAvailable}
	}
	return Outcome{ID: j.ID, Token: j.Token, State: StateScheduled, Delay: delay}
}

// RetriesLeft reports whether a failed attempt of j may be retried: the
// attempt that just ended was not its last.
func RetriesLeft(j *Job) bool { return j.Attempt <= j.MaxRetries }

// Exhausted reports whether j was claimed after its last attempt was already
// spent: its previous execution lost its lease (worker killed, frozen or cut
// off) on the last attempt. Such a job is not run again; it fails with
// ErrLeaseExpired and its Failed hook runs.
func Exhausted(j *Job) bool { return j.Attempt > j.MaxRetries+1 }

// RetryPolicy is a task's word on a failed attempt that the rules would
// retry: whether to retry it (the task's ShouldRetry, by default not
// IsPermanent(err)) and, if so, after how long (Execution.RetryDelay:
// NextRetry, Config.Backoff or the fixed retry delay). NextOutcome calls it
// only then, so a task is not asked about a success, a cancel, a snooze or
// its last attempt. A delay below zero means at once.
type RetryPolicy func(err error) (retry bool, delay time.Duration)

// NextOutcome applies the rules to the end of an attempt of j that returned
// result and err, in this order:
//
//   - no error: completed (or failed, when the result cannot be stored);
//   - a CancelError: cancelled;
//   - a SnoozeError: handed back, scheduled its delay later (available at
//     once for 0), without counting the attempt or adding to the error
//     history, whatever the retries left and the policy;
//   - no retries left: failed;
//   - policy says retry: retryable after the policy's delay;
//   - otherwise: failed.
//
// After a failed outcome the task's Failed hook should run. A nil policy
// retries every error but a Permanent one, after j.RetryDelay.
func NextOutcome(j *Job, result json.RawMessage, err error, policy RetryPolicy) Outcome {
	if err == nil {
		return Completed(j, result)
	}
	if IsCancel(err) {
		return Cancelled(j, err)
	}
	if d, ok := snoozeOf(err); ok {
		return HandBack(j, d)
	}
	if !RetriesLeft(j) {
		return Failed(j, err)
	}
	retry, delay := !IsPermanent(err), j.RetryDelay
	if policy != nil {
		retry, delay = policy(err)
	}
	if retry {
		return RetryIn(j, err, delay)
	}
	return Failed(j, err)
}

// IsCancel reports whether err, or an error it wraps, is a CancelError. An
// error whose Unwrap or As method panics is not.
func IsCancel(err error) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	var ce *CancelError
	return errors.As(err, &ce)
}

// Finishes reports whether the outcome ends the job: completed, failed or
// cancelled. Adapters set finished_at for these.
func (o Outcome) Finishes() bool {
	return o.State == StateCompleted || o.State == StateFailed || o.State == StateCancelled
}

// Counts reports whether the attempt counts against the retry budget. A
// hand-back (available or scheduled) does not: adapters take the attempt back.
func (o Outcome) Counts() bool { return o.State != StateAvailable && o.State != StateScheduled }

// RunsAgain reports whether the job runs again after o.Delay: retryable, or
// handed back with a delay (scheduled).
func (o Outcome) RunsAgain() bool { return o.State == StateRetryable || o.State == StateScheduled }

// Check reports whether o is an outcome an adapter may apply: a state an
// execution can end in, and a result only on completion.
func (o Outcome) Check() error {
	switch o.State {
	case StateCompleted, StateRetryable, StateFailed, StateCancelled, StateAvailable, StateScheduled:
	default:
		return fmt.Errorf("tasq: outcome for job %s has state %q, which no execution can end in", o.ID, o.State)
	}
	if len(o.Result) > 0 && o.State != StateCompleted {
		return fmt.Errorf("tasq: outcome for job %s carries a result but ends %s", o.ID, o.State)
	}
	if o.Delay < 0 {
		return fmt.Errorf("tasq: outcome for job %s has a negative delay", o.ID)
	}
	return nil
}

// Storable is the outcome an adapter applies for o: o with its error text
// cleaned (CleanErrorText), or FailedUnstorable when o fails Check or its
// result fails CheckResult. Adapters pass every outcome through it, so that
// one bad outcome fails its own job instead of the whole batch (a worker
// retries a failed Finish, which would hold every outcome of the batch).
func Storable(o Outcome) Outcome {
	if err := o.Check(); err != nil {
		return FailedUnstorable(o, err)
	}
	if err := CheckResult(o.Result); err != nil {
		return FailedUnstorable(o, fmt.Errorf("the result cannot be stored: %w", err))
	}
	if o.Error != "" {
		o.Error = CleanErrorText(o.Error)
	}
	return o
}

// FailedUnstorable is what an adapter stores in place of outcome o when the
// backend refused to store it (a value it cannot represent): the job fails,
// with the reason, instead of stopping the outcomes written with it.
func FailedUnstorable(o Outcome, err error) Outcome {
	return Outcome{ID: o.ID, Token: o.Token, State: StateFailed,
		Error: CleanErrorText(fmt.Sprintf("the %s outcome of this attempt could not be stored (%s); original error text: %s",
			o.State, ErrorText(err), o.Error))}
}

// LeaseExpiredText is the error history entry of an execution whose lease
// ran out, held by workerID.
func LeaseExpiredText(workerID string) string {
	if workerID == "" {
		workerID = "?"
	}
	return CleanErrorText("lease expired: worker " + workerID + " stopped renewing it (crashed, frozen or cut off from the database?)")
}

// ErrorText returns err's text for the error history, safely: a nil error,
// or one whose Error method panics, still gives text, and the text is
// cleaned with CleanErrorText.
func ErrorText(err error) (s string) {
	if err == nil {
		return "error: <nil>"
	}
	defer func() {
		if p := recover(); p != nil {
			s = CleanErrorText(fmt.Sprintf("error of type %T whose Error method panicked: %v", err, p))
		}
	}()
	return CleanErrorText(err.Error())
}

// CleanErrorText makes s storable by every backend: invalid UTF-8 becomes
// U+FFFD, NUL bytes become the two characters \0, and text longer than
// MaxErrorLength is cut at a character boundary with a note saying so.
func CleanErrorText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", `\0`)
	}
	if len(s) > MaxErrorLength {
		n := len(s)
		cut := MaxErrorLength - 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = fmt.Sprintf("%s... [cut: %d bytes in all]", s[:cut], n)
	}
	return s
}

// CheckResult reports whether a result can be stored by every backend:
// valid JSON in valid UTF-8, no \u0000 escape (PostgreSQL's jsonb refuses
// it), at most MaxResultSize bytes.
func CheckResult(b json.RawMessage) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) > MaxResultSize {
		return fmt.Errorf("it is %d bytes; the limit is %d", len(b), MaxResultSize)
	}
	if !utf8.Valid(b) {
		return errors.New("it is not valid UTF-8")
	}
	if !json.Valid(b) {
		return errors.New("it is not valid JSON")
	}
	if i := nulEscape(b); i >= 0 {
		return fmt.Errorf("it contains the escape \\u0000 (a NUL character) at byte %d, which PostgreSQL cannot store in jsonb; remove NUL characters from the result", i)
	}
	return nil
}

// nulEscape returns the offset of the first \u0000 escape inside a string of
// the valid JSON b, or -1.
func nulEscape(b []byte) int {
	in := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case !in:
			if c == '"' {
				in = true
			}
		case c == '"':
			in = false
		case c == '\\':
			if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
				return i
			}
			i++ // skip the escaped character
		}
	}
	return -1
}
