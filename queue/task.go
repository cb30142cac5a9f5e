package queue

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Task is the contract every task type meets: Handle does the work and returns
// a result, stored as JSON on the job row when the job completes.
//
// A task is usually a pointer to a struct whose exported fields are the
// payload; they are encoded as JSON at dispatch and decoded into a fresh value
// before Handle runs. Unexported fields (and an embedded TaskBase) do not travel.
type Task[R any] interface {
	Handle(ctx context.Context) (R, error)
}

// Configurer is implemented by tasks that set their own configuration, the
// counterpart of the guide's class attributes.
type Configurer interface {
	Config() Config
}

// FailedHook is implemented by tasks that want to react once after their last
// attempt failed: compensation, alerting, cleanup. err is the final attempt's
// error. Failed is not called for cancelled jobs, nor when Handle snoozes.
type FailedHook interface {
	Failed(ctx context.Context, err error)
}

// RetryDecider is implemented by tasks that decide per error whether a failed
// attempt is retried. It is consulted only while retries remain, and never
// for a Cancel or a Snooze; returning false fails the job at once (and runs
// Failed).
type RetryDecider interface {
	ShouldRetry(err error) bool
}

// Resolver loads what a decoded task's payload only refers to, such as ORM
// models sent as table and primary key, before Handle runs. A worker given a
// Resolver calls it on every attempt, under the attempt's timeout; its error
// is the attempt's error (wrap it with Permanent when retrying is pointless).
// payload is the job's payload as stored.
type Resolver interface {
	Resolve(ctx context.Context, task any, payload []byte) error
}

// Kinder is implemented by tasks that choose the name stored in the job's kind
// column. Without it the kind is the Go type's name ("SendEmail"). Implement
// it to keep old jobs decodable after renaming a type, or when two packages
// define types of the same name.
type Kinder interface {
	Kind() string
}

// Defaults applied to a zero Config field.
const (
	DefaultQueue      = "default"
	DefaultMaxRetries = 3
	DefaultRetryDelay = 60 * time.Second
)

// Sentinels for the Config fields whose zero value means "use the default".
const (
	// NoRetries, as Config.MaxRetries, means the first failure is final.
	NoRetries = -1
	// RetryImmediately, as Config.RetryDelay or RetryAfter, retries with no delay.
	RetryImmediately time.Duration = -1
)

// MaxQueueNameLength is the longest queue name accepted.
const MaxQueueNameLength = 128

// Config is a task's configuration. The zero value of each field means the
// default, as in the guide: queue "default", 3 retries, 60 s between
// attempts, no timeout, the client's default driver.
type Config struct {
	// Queue is the queue the task is dispatched to. Default "default".
	Queue string
	// MaxRetries is how many times a failed attempt is retried, so a task runs
	// at most MaxRetries+1 times. 0 means DefaultMaxRetries; use NoRetries for none.
	MaxRetries int
	// RetryDelay is the wait between a failed attempt and the next one.
	// 0 means DefaultRetryDelay; use RetryImmediately for none. With a
	// Backoff it is the base given to Backoff.Delay (an Exponential whose
	// Base is 0 grows from it).
	RetryDelay time.Duration
	// Backoff, when set, chooses the wait before each retry from the attempt
	// number and the job's retry delay: Exponential, or a type of your own.
	// nil means the fixed RetryDelay (the dispatch's RetryAfter). A task's
	// NextRetry method (RetryScheduler) wins over it. The worker uses the
	// Backoff of the type it registered; it is not stored with the job.
	Backoff Backoff
	// Timeout bounds one attempt: Handle's context carries it as a deadline.
	// 0 means no timeout.
	Timeout time.Duration
	// Priority orders jobs within a queue: higher runs first. Default 0.
	Priority int16
	// Driver names the adapter that stores this task's jobs ("postgres",
	// "redis", ...), resolved by the client. Empty means the client's default.
	Driver string
	// Adapter, when set, is the adapter instance that stores this task's jobs;
	// it wins over Driver.
	Adapter Adapter
	// Blocking marks a task whose Handle blocks a thread or burns CPU (the
	// guide's SyncTask). Workers run such tasks on a separate, smaller pool so
	// they cannot take every slot from the other tasks.
	Blocking bool
}

// Resolved is a Config with defaults applied and values checked. It has the
// same fields, but here a zero means zero (no retries, no delay); a nil
// Backoff still means the fixed RetryDelay.
type Resolved struct {
	Queue      string
	MaxRetries int
	RetryDelay time.Duration
	Backoff    Backoff
	Timeout    time.Duration
	Priority   int16
	Driver     string
	Adapter    Adapter
	Blocking   bool
}

// Resolve applies the defaults to c and checks every field, returning an
// error wrapping ErrInvalidConfig that names the field at fault.
func (c Config) Resolve() (Resolved, error) {
	r := Resolved(c)
	if r.Queue == "" {
		r.Queue = DefaultQueue
	}
	if err := ValidateQueueName(r.Queue); err != nil {
		return r, err
	}
	switch {
	case r.MaxRetries == 0:
		r.MaxRetries = DefaultMaxRetries
	case r.MaxRetries == NoRetries:
		r.MaxRetries = 0
	case r.MaxRetries < 0:
		return r, fmt.Errorf("%w: MaxRetries is %d; use a positive count, 0 for the default (%d) or queue.NoRetries", ErrInvalidConfig, c.MaxRetries, DefaultMaxRetries)
	case r.MaxRetries > MaxRetriesLimit:
		return r, fmt.Errorf("%w: MaxRetries is %d; the limit is %d (queue.MaxRetriesLimit)", ErrInvalidConfig, c.MaxRetries, MaxRetriesLimit)
	}
	switch {
	case r.RetryDelay == 0:
		r.RetryDelay = DefaultRetryDelay
	case r.RetryDelay == RetryImmediately:
		r.RetryDelay = 0
	case r.RetryDelay < 0:
		return r, fmt.Errorf("%w: RetryDelay is %v; use a positive duration, 0 for the default (%v) or queue.RetryImmediately", ErrInvalidConfig, c.RetryDelay, DefaultRetryDelay)
	}
	if err := checkBackoff(r.Backoff); err != nil {
		return r, err
	}
	if r.Timeout < 0 {
		return r, fmt.Errorf("%w: Timeout is %v; use a positive duration, or 0 for no timeout", ErrInvalidConfig, c.Timeout)
	}
	return r, nil
}

// ValidateQueueName reports whether name can be used as a queue name: not
// empty, at most MaxQueueNameLength bytes, no whitespace or control characters.
func ValidateQueueName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: queue name is empty; leave Config.Queue unset for %q or give a name", ErrInvalidConfig, DefaultQueue)
	}
	if len(name) > MaxQueueNameLength {
		return fmt.Errorf("%w: queue name %.20q... is %d bytes; the limit is %d", ErrInvalidConfig, name, len(name), MaxQueueNameLength)
	}
	if strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("%w: queue name %q contains whitespace or control characters", ErrInvalidConfig, name)
	}
	return nil
}

// Metadata describes the job a task value is running as.
type Metadata struct {
	// ID is the job's UUID, the one Dispatch returned.
	ID uuid.UUID
	// Attempt is 0 on the first attempt, 1 on the first retry, and so on.
	Attempt int
	// DispatchedAt is when the job was dispatched (database time).
	DispatchedAt time.Time
	// Kind and Queue are the job's kind and queue.
	Kind, Queue string
	// MaxRetries is the job's retry budget.
	MaxRetries int
}

// TaskBase, embedded in a task struct, gives Handle, Failed and ShouldRetry
// access to the running job's metadata. Its fields are not part of the payload.
// On a task built by hand (in a unit test) the metadata is zero unless set
// with SetMetadata.
type TaskBase struct {
	meta Metadata
}

// ID returns the job's UUID.
func (b *TaskBase) ID() uuid.UUID { return b.meta.ID }

// Attempt returns the 0-indexed attempt number: 0 first, 1 first retry, ...
func (b *TaskBase) Attempt() int { return b.meta.Attempt }

// DispatchedAt returns when the job was first dispatched.
func (b *TaskBase) DispatchedAt() time.Time { return b.meta.DispatchedAt }

// Metadata returns all of the running job's metadata.
func (b *TaskBase) Metadata() Metadata { return b.meta }

func (b *TaskBase) setMetadata(m Metadata) { b.meta = m }

type metadataSetter interface{ setMetadata(Metadata) }

// SetMetadata sets the metadata of a task that embeds TaskBase and reports
// whether it could. Workers do this before every attempt; tests use it to run
// Handle as if it were a given attempt.
func SetMetadata(task any, m Metadata) bool {
	s, ok := task.(metadataSetter)
	if ok {
		s.setMetadata(m)
	}
	return ok
}

type metadataKey struct{}

// ContextWithMetadata returns a context carrying m, as the worker gives to
// Handle, Failed and function tasks.
func ContextWithMetadata(ctx context.Context, m Metadata) context.Context {
	return context.WithValue(ctx, metadataKey{}, m)
}

// MetadataFromContext returns the metadata of the job running under ctx. It is
// how function tasks, which have no TaskBase, learn their ID and attempt.
func MetadataFromContext(ctx context.Context) (Metadata, bool) {
	switch v := ctx.Value(metadataKey{}).(type) {
	case Metadata:
		return v, true
	case *attemptValues:
		return v.meta, true
	}
	return Metadata{}, false
}

// attemptValues is what Execution.Handle puts in Handle's context: the job's
// metadata and, when the worker enabled it, the transactional completion
// (CompleteTx). One value, so that an attempt costs one context value.
type attemptValues struct {
	meta Metadata
	tx   *TxCompletion
}
