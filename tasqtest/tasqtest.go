// Package tasqtest helps test code that dispatches TasQ tasks.
//
// New returns a Recorder: an in-memory queue.Adapter that keeps every job
// dispatched to it. Give its client to the code under test, then assert on
// what was dispatched, decoded back into the task type:
//
//	rec := tasqtest.New(t)
//	signup(ctx, rec.Client(), "ada@example.com")
//	tasqtest.AssertDispatched(t, rec, func(e *SendEmail) bool { return e.To == "ada@example.com" })
//
// With Inline, Dispatch also runs each job's Handle before it returns, through
// a queue.Registry, as a worker would: retries, ShouldRetry and Failed
// included, with no waiting between attempts. The job's outcome (state,
// result, error history) is kept on the job; Result reads it:
//
//	rec := tasqtest.New(t, tasqtest.Inline(reg))
//	id, _ := rec.Client().Dispatch(ctx, &SendEmail{To: "ada@example.com"})
//	ok := tasqtest.Result[bool](t, rec, id)
//
// The assertions read jobs through queue.JobReader, so they work against a
// real backend too (adapters/postgres is one): a test that dispatches in a
// database transaction, which an in-memory adapter cannot take part in, runs
// against PostgreSQL and asserts on what committed.
//
// A Recorder is a complete backend: a worker.Worker can claim and run its
// jobs (claims, claim tokens, leases and their expiry behave as on the real
// backends). It is not a queue.TxInserter: DispatchTx on its client fails with
// queue.ErrTxUnsupported, as on any backend without transactions.
package tasqtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// DriverName is the name a Recorder reports as its driver.
const DriverName = "tasqtest"

// Recorder is an in-memory queue.Adapter and queue.JobReader that records
// every job dispatched to it, and with Inline runs them at once. It is safe
// for concurrent use. Create one with New.
type Recorder struct {
	tb       testing.TB
	reg      *queue.Registry // Inline mode when not nil
	inline   bool            // Inline was given (with a nil registry, New fails)
	resolver queue.Resolver

	mu    sync.Mutex
	jobs  map[uuid.UUID]*record
	order []uuid.UUID // dispatch order
}

// record is one stored job.
type record struct {
	info queue.JobInfo
}

// Option configures a Recorder.
type Option func(*Recorder)

// Inline makes Dispatch run every job whose kind reg knows before it
// returns, on the dispatching goroutine, the way a worker would: the payload
// is decoded into a fresh task (built by its factory, if it was registered
// with queue.RegisterFactory), metadata set, Handle called under the task's
// Timeout, and a failed attempt retried while the task's retries and its
// ShouldRetry allow, then Failed run. Differences from a worker:
//
//   - attempts follow one another at once: Delay, RetryDelay (or the
//     task's backoff) and a Snooze's delay are not waited for; the job's
//     RunAt says when a worker would have run it next. A job still
//     unfinished after 1000 runs (a task that always snoozes) fails the
//     test;
//   - Dispatch returns nil once the job is stored, whatever Handle did, as in
//     production; read the outcome with Result or GetJob. Failed attempts are
//     also logged to the test;
//   - jobs of kinds reg does not know are only recorded (left available), as
//     a worker leaves kinds it cannot run;
//   - a task whose Handle dispatches another task runs it inline, within the
//     first one's Handle, if it passes its ctx to Dispatch.
func Inline(reg *queue.Registry) Option {
	return func(r *Recorder) { r.reg, r.inline = reg, true }
}

// WithResolver gives Inline mode the Resolver a worker would have (its
// worker.Config.Resolver), such as an ormref.Codec: it runs before every
// attempt's Handle.
func WithResolver(res queue.Resolver) Option {
	return func(r *Recorder) { r.resolver = res }
}

// New returns an empty Recorder. tb receives the log of Inline runs and the
// failures of Client.
func New(tb testing.TB, opts ...Option) *Recorder {
	tb.Helper()
	r := &Recorder{tb: tb, jobs: map[uuid.UUID]*record{}}
	for _, o := range opts {
		if o != nil {
			o(r)
		}
	}
	switch {
	case r.inline && r.reg == nil:
		tb.Fatalf("tasqtest: Inline needs the *queue.Registry that holds the task types to run")
	case r.resolver != nil && r.reg == nil:
		tb.Fatalf("tasqtest: WithResolver is for Inline mode; add tasqtest.Inline(reg)")
	}
	return r
}

var (
	_ queue.Adapter   = (*Recorder)(nil)
	_ queue.JobReader = (*Recorder)(nil)
)

// Client returns a new client whose default adapter is r. Tasks whose Config
// names a driver find r under that name only if opts say so, e.g.
// queue.WithDriver("redis", rec).
func (r *Recorder) Client(opts ...queue.ClientOption) *queue.Client {
	r.tb.Helper()
	c, err := queue.NewClient(r, opts...)
	if err != nil {
		r.tb.Fatalf("tasqtest: NewClient: %v", err)
	}
	return c
}

// Name returns DriverName.
func (r *Recorder) Name() string { return DriverName }

// Close does nothing: a Recorder holds no connections.
func (r *Recorder) Close() {}

// Reset forgets every job.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jobs = map[uuid.UUID]*record{}
	r.order = nil
}

// All returns a copy of every job, in dispatch order.
func (r *Recorder) All() []*queue.JobInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*queue.JobInfo, 0, len(r.order))
	for _, id := range r.order {
		out = append(out, r.jobs[id].snapshot())
	}
	return out
}

func (rec *record) snapshot() *queue.JobInfo {
	c := rec.info
	c.Payload = slices.Clone(c.Payload)
	c.Result = slices.Clone(c.Result)
	c.Errors = slices.Clone(c.Errors)
	return &c
}

// Insert stores jobs, all or none, after the checks every adapter makes
// (queue.CheckNewJobs). In Inline mode it then runs them, in order.
func (r *Recorder) Insert(ctx context.Context, jobs []queue.NewJob) error {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	now := time.Now()
	r.mu.Lock()
	for _, j := range jobs {
		if _, dup := r.jobs[j.ID]; dup {
			r.mu.Unlock()
			return fmt.Errorf("%w: tasqtest: a job with ID %s exists already", queue.ErrInvalidConfig, j.ID)
		}
	}
	for _, j := range jobs {
		rec := &record{info: queue.JobInfo{
			ID: j.ID, Kind: j.Kind, Queue: j.Queue, State: queue.StateAvailable, Priority: j.Priority,
			Payload: slices.Clone(j.Payload), MaxRetries: j.MaxRetries, RetryDelay: j.RetryDelay,
			Timeout: j.Timeout, RunAt: now, DispatchedAt: now,
		}}
		if len(rec.info.Payload) == 0 {
			rec.info.Payload = []byte("{}")
		}
		if j.Delay > 0 {
			rec.info.State, rec.info.RunAt = queue.StateScheduled, now.Add(j.Delay)
		}
		r.jobs[j.ID] = rec
		r.order = append(r.order, j.ID)
	}
	r.mu.Unlock()
	if r.reg != nil {
		for _, j := range jobs {
			r.runInline(ctx, j.ID)
		}
	}
	return nil
}

// Claim marks up to req.Limit due jobs of req.Queue running for
// req.WorkerID, highest priority first, then oldest. A running job whose
// lease expired is rescued first (its error history notes it), as a real
// backend's maintenance would.
func (r *Recorder) Claim(ctx context.Context, req queue.ClaimRequest) ([]*queue.Job, error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	var due []*record
	for _, id := range r.order {
		rec := r.jobs[id]
		i := &rec.info
		if i.Queue != req.Queue || (len(req.Kinds) > 0 && !slices.Contains(req.Kinds, i.Kind)) {
			continue
		}
		if i.State == queue.StateRunning && i.LeaseExpiresAt != nil && !now.Before(*i.LeaseExpiresAt) {
			rec.addError(queue.LeaseExpiredText(i.AttemptedBy), now)
			i.State, i.RunAt, i.LeaseExpiresAt = queue.StateAvailable, now, nil
		}
		switch i.State {
		case queue.StateAvailable, queue.StateScheduled, queue.StateRetryable:
			if !now.Before(i.RunAt) {
				due = append(due, rec)
			}
		}
	}
	// Stable: equal priorities keep dispatch order.
	slices.SortStableFunc(due, func(a, b *record) int { return int(b.info.Priority) - int(a.info.Priority) })
	var out []*queue.Job
	for _, rec := range due[:min(len(due), req.Limit)] {
		out = append(out, rec.claim(req.WorkerID, req.Lease, now))
	}
	return out, nil
}

// claim marks rec running for workerID and returns the job for it.
func (rec *record) claim(workerID string, lease time.Duration, now time.Time) *queue.Job {
	i := &rec.info
	i.State = queue.StateRunning
	i.Attempt++
	i.Token++
	i.AttemptedBy = workerID
	at, until := now, now.Add(lease)
	i.AttemptedAt, i.LeaseExpiresAt = &at, &until
	return &queue.Job{
		ID: i.ID, Token: i.Token, Kind: i.Kind, Queue: i.Queue, Payload: slices.Clone(i.Payload),
		Priority: i.Priority, Attempt: i.Attempt, MaxRetries: i.MaxRetries, RetryDelay: i.RetryDelay,
		Timeout: i.Timeout, DispatchedAt: i.DispatchedAt,
	}
}

// addError appends text to the error history of the current attempt,
// keeping the first entry and the newest ones within queue.MaxErrorHistory.
func (rec *record) addError(text string, now time.Time) {
	i := &rec.info
	i.Errors = append(i.Errors, queue.JobError{Attempt: i.Attempt, At: now, Error: queue.CleanErrorText(text)})
	if extra := len(i.Errors) - queue.MaxErrorHistory; extra > 0 {
		i.Errors = slices.Delete(i.Errors, 1, 1+extra)
		i.ErrorsOmitted += extra
	}
}

// Finish applies outcomes of executions workerID holds (state running, same
// claim token); the others are stale and skipped. Each outcome goes through
// queue.Storable first, as on every backend.
func (r *Recorder) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	n := 0
	for _, o := range outcomes {
		rec, ok := r.jobs[o.ID]
		if !ok || rec.info.State != queue.StateRunning || rec.info.Token != o.Token || rec.info.AttemptedBy != workerID {
			continue
		}
		rec.apply(queue.Storable(o), now)
		n++
	}
	return n, nil
}

func (rec *record) apply(o queue.Outcome, now time.Time) {
	i := &rec.info
	if o.Error != "" {
		rec.addError(o.Error, now)
	}
	i.State, i.LeaseExpiresAt = o.State, nil
	if !o.Counts() {
		i.Attempt--
	}
	switch {
	case o.RunsAgain():
		i.RunAt = now.Add(o.Delay)
	case o.State == queue.StateAvailable:
		i.RunAt = now
	}
	if o.State == queue.StateCompleted {
		i.Result = slices.Clone(o.Result)
	}
	if o.Finishes() {
		i.FinishedAt = &now
	}
}

// ExtendLeases renews the leases workerID still holds by d and returns the
// ones it does not.
func (r *Recorder) ExtendLeases(ctx context.Context, workerID string, leases []queue.Lease, d time.Duration) ([]queue.Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	until := time.Now().Add(d)
	var lost []queue.Lease
	for _, l := range leases {
		rec, ok := r.jobs[l.ID]
		if !ok || rec.info.State != queue.StateRunning || rec.info.Token != l.Token || rec.info.AttemptedBy != workerID {
			lost = append(lost, l)
			continue
		}
		u := until
		rec.info.LeaseExpiresAt = &u
	}
	return lost, nil
}

// GetJob returns a copy of job id, or an error wrapping queue.ErrJobNotFound.
func (r *Recorder) GetJob(ctx context.Context, id uuid.UUID) (*queue.JobInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", queue.ErrJobNotFound, id)
	}
	return rec.snapshot(), nil
}

// ListJobs returns copies of the jobs f selects, newest first, as every
// queue.JobReader does.
func (r *Recorder) ListJobs(ctx context.Context, f queue.ListFilter) ([]*queue.JobInfo, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	start := len(r.order) - 1
	if f.After != uuid.Nil {
		i := slices.Index(r.order, f.After)
		if i < 0 {
			return nil, nil
		}
		start = i - 1
	}
	var out []*queue.JobInfo
	for k := start; k >= 0 && len(out) < limit; k-- {
		i := &r.jobs[r.order[k]].info
		if (f.State != "" && i.State != f.State) || (f.Queue != "" && i.Queue != f.Queue) ||
			(f.Kind != "" && i.Kind != f.Kind) || (!f.Since.IsZero() && i.DispatchedAt.Before(f.Since)) {
			continue
		}
		out = append(out, r.jobs[r.order[k]].snapshot())
	}
	return out, nil
}
