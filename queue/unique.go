package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
)

// Unique jobs: a task (its Unique method) or a dispatch (WithUnique) declares
// a key built from the job's kind and, as chosen, payload fields or the whole
// payload, the queue and a time period. While a job with that key is in one
// of the key's states, another dispatch with the same key stores no second
// job: it skips, replaces the waiting job's payload and run time, or
// throttles. The backend enforces the key (postgres with a partial unique
// index), so concurrent dispatchers cannot both get through.

// ErrUniqueUnsupported means a unique job went to a backend that cannot
// enforce unique keys (it is no UniqueInserter, or no UniqueTxInserter for a
// dispatch in a transaction). Nothing was stored. It wraps
// errors.ErrUnsupported.
var ErrUniqueUnsupported = fmt.Errorf("tasq: unique jobs are not supported by this backend: %w", errors.ErrUnsupported)

// UniqueMode says what a dispatch does when a job with its unique key exists
// in one of the key's states.
type UniqueMode uint8

const (
	// UniqueSkip, the zero value, stores nothing: the dispatch returns the
	// existing job's ID, with Dispatched.Duplicate set.
	UniqueSkip UniqueMode = iota
	// UniqueReplace (debounce) gives the existing job this dispatch's
	// payload, tags, metadata and run time (now, or after Delay) when the
	// job has not started: it is scheduled, available or retryable. Its ID
	// is returned with Duplicate and Replaced set. A running job is left
	// alone, and the dispatch is reported as a plain duplicate.
	UniqueReplace
	// UniqueThrottle keeps at most one job per key and Period: the key
	// includes the period the dispatch falls in, and by default it holds in
	// every state, completed and failed included, so a second dispatch in
	// the same period is skipped whatever became of the first job. Period
	// is required.
	UniqueThrottle
)

// String returns "skip", "replace" or "throttle".
func (m UniqueMode) String() string {
	switch m {
	case UniqueSkip:
		return "skip"
	case UniqueReplace:
		return "replace"
	case UniqueThrottle:
		return "throttle"
	}
	return fmt.Sprintf("UniqueMode(%d)", uint8(m))
}

// UniqueOpts declares a job unique. The key is always built from the job's
// kind; the fields below add to it. The zero value is "one job of this kind
// at a time": skip while a job of the kind waits, runs or is retried.
type UniqueOpts struct {
	// Mode is what a dispatch does when the key is taken: UniqueSkip (the
	// zero value), UniqueReplace or UniqueThrottle.
	Mode UniqueMode
	// ByPayload adds the whole payload to the key: jobs with other field
	// values are other jobs. It cannot be combined with Fields.
	ByPayload bool
	// Fields adds these top-level payload fields to the key, by their JSON
	// names (a struct field's Go name unless a json tag renames it), in any
	// order. A field missing from the payload is an error, since a key that
	// silently left it out would merge jobs that differ: don't mark key
	// fields omitempty.
	Fields []string
	// ByQueue adds the queue the job goes to (after OnQueue) to the key, so
	// that the same job may wait once per queue.
	ByQueue bool
	// Period, when positive, adds the period the dispatch falls in to the
	// key: the client's clock truncated to a multiple of Period since the
	// Unix epoch (in UTC). Two dispatches in the same period share the key,
	// in different periods they do not. Required for UniqueThrottle.
	Period time.Duration
	// States are the states in which a job holds its key. nil means
	// DefaultUniqueStates for skip and replace (a finished job no longer
	// blocks), and every state for throttle. A set must hold scheduled,
	// available, running and retryable: a job moves between those without
	// a dispatch, and a move into a state of the set could otherwise meet
	// another job holding the key; which of completed, failed and
	// cancelled still block is yours to choose.
	States []JobState
}

// DefaultUniqueStates are the states in which a job holds its unique key
// unless UniqueOpts.States says otherwise (throttle: every state): while it
// waits, runs or waits for a retry.
var DefaultUniqueStates = []JobState{StateScheduled, StateAvailable, StateRunning, StateRetryable}

// Uniquer is implemented by tasks whose jobs are unique: Unique declares the
// key and the mode. A WithUnique dispatch option wins over it.
type Uniquer interface {
	Unique() UniqueOpts
}

// WithUnique makes the job unique for this dispatch, overriding the task's
// Unique method. The options are checked here: a bad set of states, a
// throttle without a period or fields together with ByPayload fail the
// dispatch with ErrInvalidConfig.
func WithUnique(opts UniqueOpts) DispatchOption {
	return func(o *dispatchOpts) error {
		if err := opts.Check(); err != nil {
			return fmt.Errorf("WithUnique: %w", err)
		}
		opts.Fields = slices.Clone(opts.Fields)
		opts.States = slices.Clone(opts.States)
		o.ext.unique = &opts
		return nil
	}
}

// Unique makes the job unique. See the function WithUnique.
func (p *Pending) Unique(opts UniqueOpts) *Pending {
	p.opts = append(p.opts, WithUnique(opts))
	return p
}

// Check reports whether o declares a key a backend can enforce.
func (o UniqueOpts) Check() error {
	switch o.Mode {
	case UniqueSkip, UniqueReplace, UniqueThrottle:
	default:
		return fmt.Errorf("%w: unique mode %v; use UniqueSkip, UniqueReplace or UniqueThrottle", ErrInvalidConfig, o.Mode)
	}
	if o.ByPayload && len(o.Fields) > 0 {
		return fmt.Errorf("%w: unique key: ByPayload takes the whole payload; leave Fields out, or name the fields without ByPayload", ErrInvalidConfig)
	}
	seen := make(map[string]bool, len(o.Fields))
	for _, f := range o.Fields {
		if f == "" {
			return fmt.Errorf("%w: unique key: an empty field name in Fields", ErrInvalidConfig)
		}
		if seen[f] {
			return fmt.Errorf("%w: unique key: field %q appears twice in Fields", ErrInvalidConfig, f)
		}
		seen[f] = true
	}
	switch {
	case o.Period < 0:
		return fmt.Errorf("%w: unique key: Period %v is negative", ErrInvalidConfig, o.Period)
	case o.Period > 0 && o.Period < time.Millisecond:
		return fmt.Errorf("%w: unique key: Period %v is below a millisecond", ErrInvalidConfig, o.Period)
	case o.Mode == UniqueThrottle && o.Period == 0:
		return fmt.Errorf("%w: unique key: UniqueThrottle needs a Period (at most one job per period)", ErrInvalidConfig)
	}
	if o.States != nil {
		if err := checkUniqueStates(o.States); err != nil {
			return err
		}
	}
	return nil
}

// states returns the states in which the key holds.
func (o UniqueOpts) states() []JobState {
	switch {
	case o.States != nil:
		return o.States
	case o.Mode == UniqueThrottle:
		return States
	}
	return DefaultUniqueStates
}

// checkUniqueStates checks a set of unique states: known states, the live
// ones all in it.
func checkUniqueStates(states []JobState) error {
	for _, s := range states {
		if _, err := ParseJobState(string(s)); err != nil {
			return fmt.Errorf("%w: unique states: %w", ErrInvalidConfig, err)
		}
	}
	for _, s := range DefaultUniqueStates {
		if !slices.Contains(states, s) {
			return fmt.Errorf("%w: unique states %v leave out %s; a set must hold %v (jobs move between these states without a dispatch, so each of them must keep the key), plus any of completed, failed and cancelled",
				ErrInvalidConfig, states, s, DefaultUniqueStates)
		}
	}
	return nil
}

// UniqueStateBits returns states as a bit set: scheduled is 1, available 2,
// running 4, completed 8, retryable 16, failed 32, cancelled 64 (the states
// in the order migration 9 knew them; pending, which a unique job never
// is, has no bit). The postgres adapter stores it in the unique_states
// column.
func UniqueStateBits(states []JobState) int16 {
	var bits int16
	for _, s := range states {
		if i := slices.Index(uniqueBitStates, s); i >= 0 {
			bits |= 1 << i
		}
	}
	return bits
}

// uniqueBitStates are the states with a bit in UniqueStateBits, bit i for
// the i-th: stored values, so the order never changes.
var uniqueBitStates = []JobState{StateScheduled, StateAvailable, StateRunning, StateCompleted, StateRetryable, StateFailed, StateCancelled}

// MaxUniqueKeyLength is the longest NewJob.UniqueKey accepted. The client's
// keys are SHA-256 hashes, 32 bytes.
const MaxUniqueKeyLength = 256

// uniqueKeyVersion starts every key, so that a change of the encoding
// changes every key rather than colliding with old ones.
const uniqueKeyVersion = "tasq.unique.v1"

// key returns the unique key of a job of kind on queue with payload,
// dispatched at now: a SHA-256 hash of the parts o chose, each written with
// its length so that no two sets of parts write the same bytes.
func (o UniqueOpts) key(kind, queueName string, payload []byte, now time.Time) ([]byte, error) {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	part := func(name string, value []byte) {
		for _, s := range [][]byte{[]byte(name), value} {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
			h.Write(s)
		}
	}
	part("v", []byte(uniqueKeyVersion))
	part("kind", []byte(kind))
	if o.ByQueue {
		part("queue", []byte(queueName))
	}
	switch {
	case o.ByPayload:
		c, err := canonicalJSON(payload)
		if err != nil {
			return nil, fmt.Errorf("%w: unique key: the payload: %w", ErrInvalidPayload, err)
		}
		part("payload", c)
	case len(o.Fields) > 0:
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(payload, &fields); err != nil {
			return nil, fmt.Errorf("%w: unique key: Fields needs a payload that is a JSON object: %w", ErrInvalidConfig, err)
		}
		names := slices.Clone(o.Fields)
		sort.Strings(names)
		for _, name := range names {
			v, ok := fields[name]
			if !ok {
				return nil, fmt.Errorf("%w: unique key: field %q is not in the payload of %s (fields are the payload's JSON names; an omitempty field is left out when empty)", ErrInvalidConfig, name, kind)
			}
			c, err := canonicalJSON(v)
			if err != nil {
				return nil, fmt.Errorf("%w: unique key: field %q: %w", ErrInvalidPayload, name, err)
			}
			part("field", []byte(name))
			part("value", c)
		}
	}
	if o.Period > 0 {
		bucket := now.UnixNano() / int64(o.Period)
		if now.UnixNano() < 0 && now.UnixNano()%int64(o.Period) != 0 {
			bucket-- // floor, not truncation toward zero, before 1970
		}
		part("period", binary.BigEndian.AppendUint64(nil, uint64(o.Period)))
		part("bucket", binary.BigEndian.AppendUint64(nil, uint64(bucket)))
	}
	return h.Sum(nil), nil
}

// canonicalJSON re-encodes a JSON value with object keys sorted and no
// insignificant space, so that equal values give equal bytes whatever
// encoder wrote them (numbers keep their text).
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// WithClock makes the client read the time from now instead of time.Now,
// for what it computes itself: the period of a unique key (UniqueOpts.
// Period). Run times and dispatch times come from the backend's clock. For
// tests.
func WithClock(now func() time.Time) ClientOption {
	return func(c *Client) error {
		if now == nil {
			return fmt.Errorf("%w: WithClock needs a function", ErrInvalidConfig)
		}
		c.now = now
		return nil
	}
}

// clock returns the client's time.
func (c *Client) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// Dispatched says what a dispatch did with one task.
type Dispatched struct {
	// ID is the new job's ID, or, for a duplicate, the existing job's.
	ID uuid.UUID
	// Duplicate says that a job with the same unique key held it: no job
	// was stored for this task, and ID is the existing job's (or, in a
	// batch with the same key twice, the job stored for the other task).
	Duplicate bool
	// Replaced says that UniqueReplace gave the existing job (ID) this
	// dispatch's payload, tags, metadata and run time. Duplicate is set too.
	Replaced bool
}

// UniqueInserter is the capability of adapters that enforce unique keys
// (NewJob.UniqueKey). InsertUnique stores jobs as Insert does, all or none,
// except that a job whose key is held by an existing job in one of that
// job's unique states is not stored: it is reported as a duplicate, or
// replaces the existing job (NewJob.UniqueReplace). It returns one result per
// job, in order. Jobs without a key are stored as Insert stores them; two
// jobs of one batch with the same key are one job (see DedupeUnique). Under
// concurrent dispatchers exactly one job holds a key.
type UniqueInserter interface {
	InsertUnique(ctx context.Context, jobs []NewJob) ([]Dispatched, error)
}

// UniqueTxInserter is UniqueInserter inside the caller's transaction (see
// TxInserter). A key held by a job that another transaction stored and has
// not committed makes the call wait for that transaction: if it commits,
// the job is a duplicate; if it rolls back, the job is stored.
type UniqueTxInserter interface {
	InsertUniqueTx(ctx context.Context, tx any, jobs []NewJob) ([]Dispatched, error)
}

// HasUnique reports whether any job of the batch has a unique key.
func HasUnique(jobs []NewJob) bool {
	for i := range jobs {
		if jobs[i].UniqueKey != nil {
			return true
		}
	}
	return false
}

// DedupeUnique finds jobs of a batch that share a unique key, so that an
// adapter stores (or replaces with) one job per key. rep[i] is the index of
// the job that stands for job i: i itself for a job without a key or the
// first of its key, the first job of its key otherwise (UniqueSkip: the
// first dispatch wins) — unless a job of that key replaces (UniqueReplace),
// in which case the last such job stands for all of them (the last
// dispatch wins). The jobs with rep[i] != i are duplicates of job rep[i].
func DedupeUnique(jobs []NewJob) (rep []int) {
	rep = make([]int, len(jobs))
	byKey := make(map[string]int)
	for i := range jobs {
		rep[i] = i
		k := jobs[i].UniqueKey
		if k == nil {
			continue
		}
		if _, seen := byKey[string(k)]; !seen || jobs[i].UniqueReplace {
			byKey[string(k)] = i // the first job, or the last replacing one
		}
	}
	for i := range jobs {
		if k := jobs[i].UniqueKey; k != nil {
			rep[i] = byKey[string(k)]
		}
	}
	return rep
}

// checkUniqueJob checks the unique fields of one NewJob.
func checkUniqueJob(i int, j *NewJob) error {
	if j.UniqueKey == nil {
		if j.UniqueStates != nil || j.UniqueReplace {
			return fmt.Errorf("%w: job %d (%s) has unique states or replace without a UniqueKey", ErrInvalidConfig, i, j.Kind)
		}
		return nil
	}
	if len(j.UniqueKey) == 0 || len(j.UniqueKey) > MaxUniqueKeyLength {
		return fmt.Errorf("%w: job %d (%s): UniqueKey is %d bytes; give 1 to %d", ErrInvalidConfig, i, j.Kind, len(j.UniqueKey), MaxUniqueKeyLength)
	}
	if j.UniqueStates == nil {
		return fmt.Errorf("%w: job %d (%s) has a UniqueKey without UniqueStates", ErrInvalidConfig, i, j.Kind)
	}
	if err := checkUniqueStates(j.UniqueStates); err != nil {
		return fmt.Errorf("job %d (%s): %w", i, j.Kind, err)
	}
	return nil
}

// setUnique gives job the unique key that o (or, when o is nil, the task's
// Unique method) declares.
func (c *Client) setUnique(task any, o *UniqueOpts, job *NewJob) error {
	if o == nil {
		u, ok := task.(Uniquer)
		if !ok {
			return nil
		}
		opts := u.Unique()
		if err := opts.Check(); err != nil {
			return fmt.Errorf("tasq: %s: Unique(): %w", job.Kind, err)
		}
		o = &opts
	}
	key, err := o.key(job.Kind, job.Queue, job.Payload, c.clock())
	if err != nil {
		return fmt.Errorf("tasq: %s: %w", job.Kind, err)
	}
	job.UniqueKey = key
	job.UniqueStates = o.states()
	job.UniqueReplace = o.Mode == UniqueReplace
	return nil
}
