package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Errors of Wait and Cancel that callers branch on with errors.Is.
var (
	// ErrJobFailed is wrapped by Wait's error for a job that failed for good
	// (no retries left, or an error that is not retried). The error is a
	// *WaitError holding the last error text.
	ErrJobFailed = errors.New("tasq: job failed")
	// ErrJobCancelled is wrapped by Wait's error for a job that was
	// cancelled, by an operator or by its task. The error is a *WaitError.
	ErrJobCancelled = errors.New("tasq: job cancelled")
	// ErrUnsupported means none of the client's backends has the capability
	// an operation needs, such as SQS, which cannot look a job up by ID, for
	// Wait and Cancel.
	ErrUnsupported = errors.New("tasq: not supported by the backend")
)

// WaitError is the error Wait returns for a job that finished without
// completing: it failed (errors.Is(err, ErrJobFailed)) or was cancelled
// (errors.Is(err, ErrJobCancelled)).
type WaitError struct {
	ID    uuid.UUID
	State JobState // StateFailed or StateCancelled
	// LastError is the newest entry of the job's error history: the final
	// attempt's error, or "cancelled by operator".
	LastError string
	// Job is the finished job as the backend stores it.
	Job *JobInfo
}

func (e *WaitError) Error() string {
	if e.LastError == "" {
		return fmt.Sprintf("tasq: job %s %s", e.ID, e.State)
	}
	return fmt.Sprintf("tasq: job %s %s: %s", e.ID, e.State, e.LastError)
}

// Is makes errors.Is(err, ErrJobFailed) and errors.Is(err, ErrJobCancelled) work.
func (e *WaitError) Is(target error) bool {
	return (target == ErrJobFailed && e.State == StateFailed) || (target == ErrJobCancelled && e.State == StateCancelled)
}

// JobAwaiter is the capability of backends that can tell a waiting client
// soon after a job finishes, rather than being asked again and again.
// adapters/postgres is one (LISTEN/NOTIFY, with polling as the fallback);
// Wait polls a JobReader on backends without it.
type JobAwaiter interface {
	// AwaitJob returns job id once it has finished: completed, failed or
	// cancelled. It returns an error wrapping ErrJobNotFound when no job
	// has the ID, or when the job is deleted (retention, `tasq jobs
	// delete`) while it waits, and ctx's error when ctx is done first.
	AwaitJob(ctx context.Context, id uuid.UUID) (*JobInfo, error)
}

// Finished reports whether s ends a job: completed, failed or cancelled.
func (s JobState) Finished() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// Polling intervals of AwaitByPolling: the first read is at once, the next
// ones come after FirstPoll, doubling up to the caller's cap.
const (
	FirstPoll       = 10 * time.Millisecond
	DefaultPollCap  = time.Second
	maxPollFailures = 3
)

// AwaitByPolling waits for job id to finish by reading it with r: at once,
// then after FirstPoll, doubling up to every (DefaultPollCap when 0), and
// at once whenever poke delivers (a notification that it may have
// finished; nil for none). It returns as JobAwaiter.AwaitJob does. A read
// that fails is tried again at the next poll; after three failures in a row
// the last error is returned. Adapters with notifications call it with
// their own poke; Wait calls it for backends that are only a JobReader.
func AwaitByPolling(ctx context.Context, r JobReader, id uuid.UUID, every time.Duration, poke <-chan struct{}) (*JobInfo, error) {
	if every <= 0 {
		every = DefaultPollCap
	}
	interval := FirstPoll
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		case <-poke:
		}
		j, err := r.GetJob(ctx, id)
		switch {
		case err == nil && j.State.Finished():
			return j, nil
		case errors.Is(err, ErrJobNotFound):
			return nil, fmt.Errorf("tasq: wait for job %s: %w", id, err)
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			if failures++; failures >= maxPollFailures {
				return nil, fmt.Errorf("tasq: wait for job %s: %w", id, err)
			}
		default:
			failures = 0
		}
		if !t.Stop() {
			select { // drained when poke won the select above
			case <-t.C:
			default:
			}
		}
		t.Reset(interval)
		interval = min(2*interval, every)
	}
}

// Wait waits until job id has finished and returns its result, as stored:
// the JSON encoding of what Handle returned (WaitResult decodes it). It
// works from any process that reaches the job's backend, not only the
// worker's. It returns
//
//   - the result, for a completed job;
//   - a *WaitError wrapping ErrJobFailed, with the last error text, for a
//     job that failed for good, and wrapping ErrJobCancelled for one that
//     was cancelled;
//   - an error wrapping ErrJobNotFound when no backend of the client has
//     the job, or when it is deleted while Wait waits (retention);
//   - ctx's error when ctx is done first: give it a deadline.
//
// A job that is retried is not finished: Wait goes on waiting through its
// retries. On postgres the waiter is told by LISTEN/NOTIFY when the job
// finishes, and polls as a fallback; on backends that can only look jobs up
// (mysql, redis) it polls, at once and then at intervals doubling from 10 ms
// to 1 s. On a backend that cannot look a job up by ID (SQS) it returns an
// error wrapping ErrUnsupported.
//
// The job is looked for in the client's default adapter, then in the
// adapters given with WithDriver. A job dispatched in a transaction exists
// once the transaction commits: Wait for it after the commit.
func (c *Client) Wait(ctx context.Context, id uuid.UUID) (json.RawMessage, error) {
	j, err := c.await(ctx, id)
	if err != nil {
		return nil, err
	}
	switch j.State {
	case StateCompleted:
		return j.Result, nil
	default:
		return nil, &WaitError{ID: id, State: j.State, LastError: j.LastError(), Job: j}
	}
}

// WaitResult is Client.Wait with the result decoded into R, the result
// type of the job's task (Handle(ctx) (R, error)). A job whose task returns
// nothing but an error has the result null, which decodes into R's zero
// value. A result that does not decode into R is an error wrapping ErrDecode.
//
//	res, err := queue.WaitResult[Receipt](ctx, client, id)
func WaitResult[R any](ctx context.Context, c *Client, id uuid.UUID) (R, error) {
	var r R
	raw, err := c.Wait(ctx, id)
	if err != nil {
		return r, err
	}
	if len(raw) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("%w: the result of job %s does not decode into %T: %w", ErrDecode, id, r, err)
	}
	return r, nil
}

// await finds the backend that holds job id and waits for the job there.
func (c *Client) await(ctx context.Context, id uuid.UUID) (*JobInfo, error) {
	if c == nil {
		return nil, ErrNoDefaultClient
	}
	var readers []JobReader
	var names []string
	for _, a := range c.adapters() {
		if r, ok := a.(JobReader); ok {
			readers = append(readers, r)
			names = append(names, a.Name())
		}
	}
	if len(readers) == 0 {
		return nil, fmt.Errorf("tasq: wait for job %s: %w: none of the client's backends (%s) can look a job up by ID (queue.JobReader)", id, ErrUnsupported, adapterNames(c))
	}
	r := readers[0]
	if len(readers) > 1 {
		// Which backend has it? Ask each once; a job found nowhere is not found.
		r = nil
		for _, cand := range readers {
			_, err := cand.GetJob(ctx, id)
			if err == nil {
				r = cand
				break
			}
			if !errors.Is(err, ErrJobNotFound) {
				return nil, fmt.Errorf("tasq: wait for job %s: %w", id, err)
			}
		}
		if r == nil {
			return nil, fmt.Errorf("tasq: wait for job %s: %w (looked in %v)", id, ErrJobNotFound, names)
		}
	}
	if aw, ok := r.(JobAwaiter); ok {
		return aw.AwaitJob(ctx, id)
	}
	return AwaitByPolling(ctx, r, id, DefaultPollCap, nil)
}
