package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
)

// JobState is a job's place in its life cycle:
// scheduled -> available -> running -> completed | retryable | failed | cancelled.
type JobState string

// The job states, as stored in the state column.
const (
	StateScheduled JobState = "scheduled"
	StateAvailable JobState = "available"
	StateRunning   JobState = "running"
	StateCompleted JobState = "completed"
	StateRetryable JobState = "retryable"
	StateFailed    JobState = "failed"
	StateCancelled JobState = "cancelled"
)

// States lists every job state in life-cycle order.
var States = []JobState{StateScheduled, StateAvailable, StateRunning, StateCompleted, StateRetryable, StateFailed, StateCancelled}

// ParseJobState checks that s names a job state.
func ParseJobState(s string) (JobState, error) {
	for _, st := range States {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("tasq: unknown job state %q; use one of %v", s, States)
}

// NewJob is a job to insert, built by the client from a task and its options.
type NewJob struct {
	ID         uuid.UUID
	Kind       string
	Queue      string
	Payload    []byte
	Priority   int16
	Delay      time.Duration // > 0: scheduled, runs Delay after the insert commits
	MaxRetries int
	RetryDelay time.Duration
	Timeout    time.Duration
}

// CheckNewJobs validates a batch before an adapter stores any of it: not
// empty, every job with an ID (none twice), a kind, a valid queue name, a
// payload that is valid JSON, and no negative durations or retry counts.
// Adapters call it first, so that a bad batch stores nothing.
func CheckNewJobs(jobs []NewJob) error {
	if len(jobs) == 0 {
		return fmt.Errorf("%w: no jobs to insert", ErrInvalidConfig)
	}
	var seen map[uuid.UUID]bool
	if len(jobs) > 1 {
		seen = make(map[uuid.UUID]bool, len(jobs))
	}
	for i := range jobs {
		j := &jobs[i]
		if err := ValidateQueueName(j.Queue); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		switch {
		case j.Kind == "":
			return fmt.Errorf("%w: job %d has an empty kind", ErrInvalidConfig, i)
		case j.ID == uuid.Nil:
			return fmt.Errorf("%w: job %d (%s) has no ID", ErrInvalidConfig, i, j.Kind)
		case seen != nil && seen[j.ID]:
			return fmt.Errorf("%w: job ID %s appears twice in the batch", ErrInvalidConfig, j.ID)
		case len(j.Payload) > 0 && !json.Valid(j.Payload):
			return fmt.Errorf("%w: job %d (%s) has a payload that is not valid JSON", ErrInvalidConfig, i, j.Kind)
		case j.MaxRetries < 0 || j.Delay < 0 || j.RetryDelay < 0 || j.Timeout < 0:
			return fmt.Errorf("%w: job %d (%s): MaxRetries, Delay, RetryDelay and Timeout must not be negative", ErrInvalidConfig, i, j.Kind)
		}
		if seen != nil {
			seen[j.ID] = true
		}
	}
	return nil
}

// Job is a claimed job, as handed to a worker.
type Job struct {
	ID           uuid.UUID
	Kind         string
	Queue        string
	Payload      []byte
	Priority     int16
	Attempt      int // claims so far, this one included (1 on the first attempt)
	MaxRetries   int
	RetryDelay   time.Duration
	Timeout      time.Duration
	DispatchedAt time.Time
}

// Outcome is the end of one attempt, written back by the worker that claimed
// it. Adapters apply an outcome only while the job is still running the same
// attempt for the same worker (the completion guard), so a stale worker cannot
// overwrite a newer attempt.
type Outcome struct {
	ID      uuid.UUID
	Attempt int
	// State is the job's next state: completed, retryable, failed, cancelled,
	// or available/scheduled to hand the job back unfinished (the attempt is
	// then not counted).
	State  JobState
	Result json.RawMessage // completed only
	Error  string          // appended to the job's error history when non-empty
	Delay  time.Duration   // retryable or scheduled: when to run again
}

// JobError is one entry of a job's error history.
type JobError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// JobInfo is a job row as the inspection commands see it.
type JobInfo struct {
	ID             uuid.UUID
	Kind           string
	Queue          string
	State          JobState
	Priority       int16
	Payload        json.RawMessage
	Result         json.RawMessage
	Attempt        int
	MaxRetries     int
	RetryDelay     time.Duration
	Timeout        time.Duration
	RunAt          time.Time
	DispatchedAt   time.Time
	AttemptedAt    *time.Time
	AttemptedBy    string
	LeaseExpiresAt *time.Time
	FinishedAt     *time.Time
	Errors         []JobError
}

// LastError returns the newest entry of the error history, or "".
func (j *JobInfo) LastError() string {
	if len(j.Errors) == 0 {
		return ""
	}
	return j.Errors[len(j.Errors)-1].Error
}

// ListFilter selects jobs for Inspector.ListJobs. Zero fields match anything.
type ListFilter struct {
	State JobState
	Queue string
	Kind  string
	// Since keeps jobs dispatched at or after it.
	Since time.Time
	// Limit caps the rows returned (newest first); 0 means 100.
	Limit int
}

// QueueStat is the number of jobs of one queue in one state.
type QueueStat struct {
	Queue string
	State JobState
	Count int64
}

// Inserter stores new jobs.
type Inserter interface {
	// Insert stores jobs atomically: all of them or none.
	Insert(ctx context.Context, jobs []NewJob) error
	// InsertTx stores jobs inside the caller's transaction, so they exist only
	// if it commits. An adapter returns an error wrapping ErrTxUnsupported for
	// transaction types it does not know.
	InsertTx(ctx context.Context, tx any, jobs []NewJob) error
}

// Source is what a worker needs from a backend.
type Source interface {
	// Claim takes up to limit available jobs of queue for workerID, marks them
	// running with a lease of the given length, and returns them.
	Claim(ctx context.Context, queue, workerID string, limit int, lease time.Duration) ([]*Job, error)
	// Finish applies outcomes of attempts claimed by workerID, each only if
	// that attempt still holds the job. It returns how many were applied.
	Finish(ctx context.Context, workerID string, outcomes []Outcome) (int, error)
	// ExtendLeases renews the leases of jobs that workerID still runs.
	ExtendLeases(ctx context.Context, workerID string, ids []uuid.UUID, lease time.Duration) error
	// Maintain makes due scheduled and retryable jobs available and hands back
	// running jobs whose lease has expired. It returns how many it moved.
	Maintain(ctx context.Context) (promoted, rescued int, err error)
}

// Notifier is implemented by sources that can wake workers when jobs become
// available. Subscribe delivers queue names ("" means any queue may have
// work) until ctx is done.
type Notifier interface {
	Subscribe(ctx context.Context) (<-chan string, error)
}

// Inspector reads and changes jobs for operators (the tasq jobs and stats commands).
type Inspector interface {
	GetJob(ctx context.Context, id uuid.UUID) (*JobInfo, error)
	ListJobs(ctx context.Context, f ListFilter) ([]*JobInfo, error)
	// RetryJob makes a failed, cancelled, retryable or scheduled job available
	// now with a fresh retry budget.
	RetryJob(ctx context.Context, id uuid.UUID) error
	// CancelJob cancels a job that has not finished.
	CancelJob(ctx context.Context, id uuid.UUID) error
	// DeleteJob removes a job that is not running.
	DeleteJob(ctx context.Context, id uuid.UUID) error
	Stats(ctx context.Context) ([]QueueStat, error)
}

// Adapter is a backend: it stores jobs, hands them to workers, and answers
// operators. adapters/postgres is the native one.
type Adapter interface {
	// Name is the driver name the adapter registered under ("postgres").
	Name() string
	Inserter
	Source
	Inspector
	// Close releases the adapter's connections.
	Close()
}

// OpenFunc opens an adapter from a connection URL.
type OpenFunc func(ctx context.Context, url string) (Adapter, error)

var (
	driversMu sync.RWMutex
	drivers   = map[string]OpenFunc{}
)

// RegisterDriver makes an adapter available by name to OpenAdapter. Adapter
// packages call it from init, as database/sql drivers do. It panics when name
// is taken, since that is a programming error.
func RegisterDriver(name string, open OpenFunc) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if open == nil {
		panic("tasq: RegisterDriver " + name + " with a nil OpenFunc")
	}
	if _, dup := drivers[name]; dup {
		panic("tasq: RegisterDriver called twice for driver " + name)
	}
	drivers[name] = open
}

// Drivers returns the registered driver names, sorted.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	out := make([]string, 0, len(drivers))
	for k := range drivers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// OpenAdapter opens the adapter registered as name with url. Import the
// adapter package (for its side effect) to register it.
func OpenAdapter(ctx context.Context, name, url string) (Adapter, error) {
	driversMu.RLock()
	open, ok := drivers[name]
	driversMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q (registered: %v); import its package, e.g. _ \"github.com/tasqhq/tasq/adapters/%s\"", ErrUnknownDriver, name, Drivers(), name)
	}
	return open(ctx, url)
}
