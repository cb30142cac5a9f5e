package queue

import (
	"context"
	"encoding/json"
	"fmt"
)

// HeadersMetaKey is the reserved key of a job's metadata (WithMeta) under
// which the client stores the job's Headers, as a JSON object of strings,
// on backends that store metadata (MetaStorer). A WithMeta object that uses
// this key has it overwritten when the job carries headers.
const HeadersMetaKey = "tasq.headers"

// DispatchMiddleware wraps the storing of the jobs of one dispatch call
// (Dispatch, DispatchTx, DispatchMany, ...). It sees the jobs after they are
// built from their tasks and options, may change them — typically by adding
// headers such as a W3C traceparent with NewJob.SetHeader — and must call
// next exactly once to store them, returning what next returned (or an error
// of its own). An error stores nothing. The jobs all go to one backend.
//
// Register dispatch middleware with WithDispatchMiddleware; the first
// registered is the outermost.
type DispatchMiddleware func(ctx context.Context, jobs []*NewJob, next func(ctx context.Context) error) error

// WithDispatchMiddleware adds middleware around every dispatch of the
// client, in order: the first runs first and wraps the rest.
func WithDispatchMiddleware(mw ...DispatchMiddleware) ClientOption {
	return func(c *Client) error {
		for i, m := range mw {
			if m == nil {
				return fmt.Errorf("%w: WithDispatchMiddleware got a nil middleware (%d)", ErrInvalidConfig, i)
			}
		}
		c.dispatchMW = append(c.dispatchMW, mw...)
		return nil
	}
}

// SetHeader sets a header of the job: a string that travels with the job to
// the worker, where attempt middleware reads it from Attempt.Headers. It is
// meant for context propagation (trace context, a request id). Headers are
// stored in the job's metadata under HeadersMetaKey on a backend that stores
// metadata (MetaStorer, such as postgres); other backends drop them, so that
// propagation degrades to separate traces instead of a refused dispatch.
func (j *NewJob) SetHeader(key, value string) {
	if j.Headers == nil {
		j.Headers = make(map[string]string, 1)
	}
	j.Headers[key] = value
}

// MetaStorer is implemented by an adapter that stores a job's metadata
// (NewJob.Meta) and returns it with the claimed job (Job.Meta). The client
// stores a job's headers in its metadata only on such an adapter.
type MetaStorer interface {
	StoresMeta() bool
}

// storesMeta reports whether a stores job metadata.
func storesMeta(a Adapter) bool {
	m, ok := a.(MetaStorer)
	return ok && m.StoresMeta()
}

// runDispatch stores jobs through the client's dispatch middleware.
func (c *Client) runDispatch(ctx context.Context, tx any, a Adapter, jobs []NewJob) ([]Dispatched, error) {
	if len(c.dispatchMW) == 0 {
		return c.store(ctx, tx, a, jobs)
	}
	ptrs := make([]*NewJob, len(jobs))
	for i := range jobs {
		ptrs[i] = &jobs[i]
	}
	var res []Dispatched
	stored := false
	next := func(ctx context.Context) error {
		if stored {
			return fmt.Errorf("%w: a dispatch middleware called next twice", ErrInvalidConfig)
		}
		stored = true
		if err := putHeaders(a, jobs); err != nil {
			return err
		}
		var err error
		res, err = c.store(ctx, tx, a, jobs)
		return err
	}
	for i := len(c.dispatchMW) - 1; i >= 0; i-- {
		mw, inner := c.dispatchMW[i], next
		next = func(ctx context.Context) error { return mw(ctx, ptrs, inner) }
	}
	if err := next(ctx); err != nil {
		return nil, err
	}
	if !stored {
		return nil, fmt.Errorf("%w: a dispatch middleware returned without calling next; nothing was stored", ErrInvalidConfig)
	}
	return res, nil
}

// putHeaders moves each job's headers into its metadata when the adapter
// stores metadata, and drops them otherwise.
func putHeaders(a Adapter, jobs []NewJob) error {
	keep := storesMeta(a)
	for i := range jobs {
		j := &jobs[i]
		if len(j.Headers) == 0 {
			continue
		}
		if !keep {
			j.Headers = nil
			continue
		}
		m := map[string]any{}
		if len(j.Meta) > 0 {
			if err := json.Unmarshal(j.Meta, &m); err != nil {
				return fmt.Errorf("tasq: job %d (%s): metadata: %w", i, j.Kind, err)
			}
		}
		m[HeadersMetaKey] = j.Headers
		raw, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("tasq: job %d (%s): headers: %w", i, j.Kind, err)
		}
		if err := CheckMeta(raw); err != nil {
			return fmt.Errorf("tasq: job %d (%s): metadata with headers: %w", i, j.Kind, err)
		}
		j.Meta = raw
	}
	return nil
}

// Attempt is one attempt of a job as attempt middleware sees it.
type Attempt struct {
	// Job is the claimed job: ID, kind, queue, attempt number, ... Treat it
	// as read-only.
	Job *Job
	// Metadata is what Handle finds in its context (MetadataFrom).
	Metadata Metadata
	// Headers are the headers the dispatch set (NewJob.SetHeader), read
	// from the job's metadata; nil when there are none or the backend
	// stores no metadata.
	Headers map[string]string

	after []func(AttemptOutcome)
}

// AttemptOutcome is what the worker decided after an attempt.
type AttemptOutcome struct {
	// Outcome is the decided outcome: its State (completed, retryable,
	// failed, cancelled, available/scheduled for a snooze or hand-back),
	// Delay and Error.
	Outcome Outcome
	// Err is what the attempt returned (after every middleware), nil on
	// success.
	Err error
	// Dropped is true when the outcome is not written: the execution lost
	// its claim while it ran, so another execution owns the job.
	Dropped bool
}

// AfterOutcome registers f to run once the worker has decided the outcome of
// the attempt, after the middleware chain has returned. Callbacks run in the
// order registered, on the executor, before the outcome is queued for
// writing; they must not block. A middleware uses it to record the outcome
// (a span's status, a counter by state).
func (a *Attempt) AfterOutcome(f func(AttemptOutcome)) { a.after = append(a.after, f) }

// Finish runs the AfterOutcome callbacks with o. The worker calls it once
// per attempt; it is exported for workers built outside package worker.
func (a *Attempt) Finish(o AttemptOutcome) {
	for _, f := range a.after {
		f(o)
	}
}

// NewAttempt describes an attempt of j with metadata md, reading the job's
// headers from its metadata (Job.Meta).
func NewAttempt(j *Job, md Metadata) *Attempt {
	return &Attempt{Job: j, Metadata: md, Headers: HeadersOf(j.Meta)}
}

// HeadersOf reads the headers stored in a job's metadata (HeadersMetaKey);
// nil when there are none or the metadata is not what the client wrote.
func HeadersOf(meta json.RawMessage) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	var m struct {
		H map[string]string `json:"tasq.headers"`
	}
	if json.Unmarshal(meta, &m) != nil {
		return nil
	}
	return m.H
}

// AttemptMiddleware wraps one attempt of a job: next resolves the task's
// references and runs Handle (a panic becomes an error wrapping ErrPanic).
// The context a middleware passes to next is the one Handle gets, so a
// middleware can add to it (a span, a logger); what it returns is what the
// worker decides the outcome from, so it can also change an error. It
// learns the decided outcome through Attempt.AfterOutcome.
//
// Register attempt middleware on a worker (worker.Config.Middleware); the
// first is the outermost.
type AttemptMiddleware func(ctx context.Context, a *Attempt, next func(ctx context.Context) (json.RawMessage, error)) (json.RawMessage, error)

// ChainAttempt returns run wrapped in mw, the first outermost.
func ChainAttempt(mw []AttemptMiddleware, a *Attempt, run func(ctx context.Context) (json.RawMessage, error)) func(ctx context.Context) (json.RawMessage, error) {
	for i := len(mw) - 1; i >= 0; i-- {
		m, inner := mw[i], run
		run = func(ctx context.Context) (json.RawMessage, error) { return m(ctx, a, inner) }
	}
	return run
}
