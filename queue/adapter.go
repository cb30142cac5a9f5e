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
// [pending ->] scheduled -> available -> running -> completed | retryable | failed | cancelled.
type JobState string

// The job states, as stored in the state column.
const (
	// StatePending is a job waiting for the jobs it depends on (After).
	StatePending   JobState = "pending"
	StateScheduled JobState = "scheduled"
	StateAvailable JobState = "available"
	StateRunning   JobState = "running"
	StateCompleted JobState = "completed"
	StateRetryable JobState = "retryable"
	StateFailed    JobState = "failed"
	StateCancelled JobState = "cancelled"
)

// States lists every job state in life-cycle order.
var States = []JobState{StatePending, StateScheduled, StateAvailable, StateRunning, StateCompleted, StateRetryable, StateFailed, StateCancelled}

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

	// UniqueKey, when not nil, makes the job unique (see UniqueOpts): no
	// second job with this key is stored while a job holding it is in one
	// of its UniqueStates. Only a UniqueInserter stores such jobs; an
	// adapter that is none refuses them (CheckPlainJobs).
	UniqueKey []byte
	// UniqueStates are the states in which the job holds UniqueKey.
	UniqueStates []JobState
	// UniqueReplace says that the job replaces the payload, tags, metadata
	// and run time of a job holding its key that has not started.
	UniqueReplace bool
	// Tags and Meta label the job (WithTags, WithMeta): tags, and a JSON
	// object (nil: none). An adapter that cannot store them refuses a job
	// that has them (CheckPlainJobs).
	Tags []string
	Meta []byte
	// Headers travel with the job to its attempts (SetHeader): the client
	// stores them in Meta under HeadersMetaKey on a MetaStorer and drops
	// them elsewhere, so adapters never see them.
	Headers map[string]string
	// DependsOn are the jobs this one waits for (After), and DepPolicy what
	// a dependency that fails does to it (AfterPolicy). An adapter that
	// cannot store them refuses a job that has them (CheckPlainJobs).
	DependsOn []uuid.UUID
	DepPolicy DepPolicy
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
		case j.MaxRetries > MaxRetriesLimit:
			return fmt.Errorf("%w: job %d (%s): MaxRetries %d is above the limit %d", ErrInvalidConfig, i, j.Kind, j.MaxRetries, MaxRetriesLimit)
		case nulEscape(j.Payload) >= 0:
			return fmt.Errorf("%w: job %d (%s): the payload holds a NUL character (\u0000), which PostgreSQL cannot store", ErrInvalidPayload, i, j.Kind)
		}
		if err := checkJobExtras(i, j); err != nil {
			return err
		}
		if seen != nil {
			seen[j.ID] = true
		}
	}
	return checkBatchDeps(jobs)
}

// Job is a claimed job, as handed to a worker.
type Job struct {
	ID uuid.UUID
	// Token is the claim token of this execution: the backend gives every
	// claim of a job a token larger than any before it and never resets it
	// (not on retry, not on hand-back). Every write about the execution —
	// its outcome, its lease renewal — is guarded by (ID, Token), so an
	// execution that lost its claim can never write again.
	Token        int64
	Kind         string
	Queue        string
	Payload      []byte
	Priority     int16
	Attempt      int // attempts counted against the retry budget, this one included (1 on the first)
	MaxRetries   int
	RetryDelay   time.Duration
	Timeout      time.Duration
	DispatchedAt time.Time
	// Meta is the job's metadata (WithMeta, and the headers under
	// HeadersMetaKey) on a backend that returns it with a claim
	// (MetaStorer); nil when it has none.
	Meta json.RawMessage
	// Invalid, when set, says why the backend could not read part of the
	// claimed row (a value out of range, a timestamp at infinity). The job
	// is not run: the worker fails it with this reason, and the other jobs
	// of the claim run as usual.
	Invalid error
}

// Lease identifies one execution of a job: its ID and claim token.
func (j *Job) Lease() Lease { return Lease{ID: j.ID, Token: j.Token} }

// Lease identifies one execution of a job: the job's ID and the claim token
// the execution holds.
type Lease struct {
	ID    uuid.UUID
	Token int64
}

// Outcome is the end of one execution, written back by the worker that holds
// it. Adapters apply an outcome only while the job is still running under
// the same claim token (the completion guard), so an execution that lost its
// lease — rescued, cancelled by an operator, retried — cannot write over a
// newer one. Build outcomes with the constructors in lifecycle.go; adapters
// apply them with the Outcome methods and decide nothing themselves.
type Outcome struct {
	ID    uuid.UUID
	Token int64
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
	// ErrorsOmitted counts error history entries dropped to keep Errors at
	// most MaxErrorHistory long (the first and the newest are kept).
	ErrorsOmitted int
	// Token is the job's claim token (0 if never claimed).
	Token int64
	// Tags and Meta are what the dispatch attached (WithTags, WithMeta):
	// nil when none, and on backends that store neither.
	Tags []string
	Meta json.RawMessage
	// DependsOn are the jobs this one waits for (After), nil when none;
	// DepPolicy is what a dependency that fails does to it, and Waiting the
	// dependencies it still waits for while it is pending.
	DependsOn []uuid.UUID
	DepPolicy DepPolicy
	Waiting   []uuid.UUID
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
	// Tag keeps jobs that have this tag (WithTags). A backend that stores
	// no tags has no job with one.
	Tag string
	// Since keeps jobs dispatched at or after it.
	Since time.Time
	// After continues a listing page by page: when set, only jobs that come
	// after this one in the listing's order (newest first, by ID) are
	// returned. Pass the ID of the last job of the previous page.
	After uuid.UUID
	// Limit caps the rows returned (newest first); 0 means 100.
	Limit int
}

// QueueStat is the number of jobs of one queue in one state.
type QueueStat struct {
	Queue string
	State JobState
	Count int64
	// Estimated says that Count is an estimate, not an exact count: a
	// backend may estimate what is costly to count, such as the finished
	// jobs of a large table (postgres takes them from the table's
	// statistics), and counts the rest exactly.
	Estimated bool
}

// Inserter stores new jobs.
type Inserter interface {
	// Insert stores jobs atomically: all of them or none.
	Insert(ctx context.Context, jobs []NewJob) error
}

// TxInserter is the capability of adapters that can store jobs inside the
// caller's transaction, so that they exist only if it commits. An adapter
// returns an error wrapping ErrTxUnsupported for a value that is not a
// transaction it knows (a pool, a connection, another database's handle):
// it never stores the jobs outside the transaction.
type TxInserter interface {
	InsertTx(ctx context.Context, tx any, jobs []NewJob) error
}

// ClaimRequest says what a worker wants from Claim.
type ClaimRequest struct {
	Queue    string
	WorkerID string
	// Limit is the most jobs to claim.
	Limit int
	// Lease is how long the claim holds without a renewal.
	Lease time.Duration
	// Kinds, when not empty, restricts the claim to jobs of these kinds:
	// a worker claims only what it can run, so that in a rolling deploy
	// jobs of a kind only newer workers know wait for them.
	Kinds []string
	// Meta asks for each job's metadata (Job.Meta) on backends that keep it
	// (MetaStorer); workers whose middleware reads it set it. Without it a
	// backend may leave Job.Meta nil, sparing the claim the reading.
	Meta bool
}

// Source is what a worker needs from a backend: the core every adapter has.
type Source interface {
	// Claim marks up to req.Limit available jobs of req.Queue running for
	// req.WorkerID with a lease of req.Lease and a new claim token each, and
	// returns them. A row it cannot fully read comes back with Job.Invalid.
	Claim(ctx context.Context, req ClaimRequest) ([]*Job, error)
	// Finish applies outcomes of executions claimed by workerID, each only
	// while its job is still running under the outcome's token. An outcome
	// the backend cannot store must not stop the others: the adapter stores
	// FailedUnstorable(o, err) for it instead. It returns how many were
	// applied; the rest were stale.
	Finish(ctx context.Context, workerID string, outcomes []Outcome) (int, error)
	// ExtendLeases renews the leases that workerID still holds and returns
	// those it no longer holds (rescued, cancelled, finished elsewhere), whose
	// executions should stop.
	ExtendLeases(ctx context.Context, workerID string, leases []Lease, d time.Duration) (lost []Lease, err error)
}

// Maintainer is the capability of backends that need periodic maintenance:
// promoting due scheduled and retryable jobs, rescuing running jobs whose
// lease expired. It returns how many jobs it moved.
type Maintainer interface {
	Maintain(ctx context.Context) (promoted, rescued int, err error)
}

// Notifier is implemented by sources that can wake workers when jobs become
// available. Subscribe delivers queue names ("" means any queue may have
// work) until ctx is done; the channel closes when ctx is done or the
// subscription is lost, and the caller subscribes again with backoff.
type Notifier interface {
	Subscribe(ctx context.Context) (<-chan string, error)
}

// JobReader is the capability of backends that can find jobs by ID and list them.
type JobReader interface {
	GetJob(ctx context.Context, id uuid.UUID) (*JobInfo, error)
	ListJobs(ctx context.Context, f ListFilter) ([]*JobInfo, error)
}

// JobEditor is the capability of backends where an operator can change one job.
type JobEditor interface {
	// RetryJob makes a failed, cancelled, retryable or scheduled job available
	// now with a fresh retry budget. Its claim token is kept, so an execution
	// of it still running somewhere can never finish the new attempt.
	RetryJob(ctx context.Context, id uuid.UUID) error
	// CancelJob cancels a job that has not finished.
	CancelJob(ctx context.Context, id uuid.UUID) error
	// DeleteJob removes a job that is not running.
	DeleteJob(ctx context.Context, id uuid.UUID) error
}

// StatsReader is the capability of backends that can count jobs per queue and state.
type StatsReader interface {
	Stats(ctx context.Context) ([]QueueStat, error)
}

// LeaderElector is the capability of backends that can elect one leader
// among the workers sharing them, so that maintenance (promotion, rescue,
// retention) runs once, not once per worker. The election is a lease in the
// backend: it needs no session state, so it works through connection poolers.
type LeaderElector interface {
	// TryLead makes workerID the leader for ttl when no other worker holds an
	// unexpired term, or extends workerID's own term. It reports whether
	// workerID leads now.
	TryLead(ctx context.Context, workerID string, ttl time.Duration) (bool, error)
	// Resign ends workerID's term, if it holds one, so another worker can
	// take over at once.
	Resign(ctx context.Context, workerID string) error
}

// KeepForever, as a retention age, keeps finished jobs of that state for ever.
const KeepForever time.Duration = -1

// PurgeFilter selects finished jobs to delete: jobs in State (completed,
// failed or cancelled) that finished more than OlderThan ago, of Queue when
// it is not empty.
type PurgeFilter struct {
	State     JobState
	Queue     string
	OlderThan time.Duration
	// ExceptQueues leaves these queues out (they have retention of their own).
	ExceptQueues []string
	// Limit caps the rows one call deletes; 0 means 1000.
	Limit int
	// Archive moves the rows to the archive table instead of deleting them.
	Archive bool
}

// Check reports whether f selects finished jobs only.
func (f PurgeFilter) Check() error {
	switch f.State {
	case StateCompleted, StateFailed, StateCancelled:
	default:
		return fmt.Errorf("%w: purge takes finished jobs only (completed, failed or cancelled), not %q", ErrInvalidConfig, f.State)
	}
	if f.OlderThan < 0 {
		return fmt.Errorf("%w: purge age %v is negative", ErrInvalidConfig, f.OlderThan)
	}
	if f.Queue != "" {
		if err := ValidateQueueName(f.Queue); err != nil {
			return err
		}
	}
	return nil
}

// Purger is the capability of backends that can delete finished jobs in
// bounded batches (retention, and `tasq jobs purge`).
type Purger interface {
	// Purge deletes (or archives) up to f.Limit jobs that f selects and
	// returns how many.
	Purge(ctx context.Context, f PurgeFilter) (int, error)
	// CountPurgeable counts the jobs f selects, for a dry run.
	CountPurgeable(ctx context.Context, f PurgeFilter) (int64, error)
}

// WorkerInfo describes a running worker, as a WorkerRegistry keeps it.
type WorkerInfo struct {
	ID        string
	Queues    []string
	Kinds     []string // the task kinds it can run
	Host      string
	PID       int
	StartedAt time.Time
	SeenAt    time.Time // its last heartbeat
}

// WorkerRegistry is the capability of backends that keep a list of running
// workers. A worker registers on start and on every heartbeat; its entry
// lapses ttl after the last one, and is removed on a clean stop.
type WorkerRegistry interface {
	RegisterWorker(ctx context.Context, w WorkerInfo, ttl time.Duration) error
	UnregisterWorker(ctx context.Context, id string) error
	Workers(ctx context.Context) ([]WorkerInfo, error)
}

// UnservedKind is a kind of available job on a queue that no live worker
// serves: its jobs wait until a worker that knows the kind comes up.
type UnservedKind struct {
	Queue  string
	Kind   string
	Count  int64
	Oldest time.Time // run_at of the oldest
}

// UnservedReader is the capability of backends that can list available jobs
// no live worker can take (see WorkerRegistry).
type UnservedReader interface {
	Unserved(ctx context.Context) ([]UnservedKind, error)
}

// Inspector is everything the tasq jobs and stats commands use.
type Inspector interface {
	JobReader
	JobEditor
	StatsReader
}

// Adapter is a backend: it stores jobs and hands them to workers. What more
// it can do (transactions, notifications, maintenance, inspection) are
// capabilities found by type assertion: TxInserter, Notifier, Maintainer,
// JobReader, JobEditor, StatsReader. adapters/postgres has them all.
type Adapter interface {
	// Name is the driver name the adapter registered under ("postgres").
	Name() string
	Inserter
	Source
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
