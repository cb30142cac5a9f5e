package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Client dispatches tasks to adapters. It is safe for concurrent use.
type Client struct {
	adapter Adapter
	named   map[string]Adapter
	encoder Encoder
	now     func() time.Time // WithClock; nil means time.Now

	dispatchMW []DispatchMiddleware // WithDispatchMiddleware
	outbox     Outbox               // WithOutbox
}

// Encoder turns a task into its job payload. The default is encoding/json;
// ormref's encoder sends ORM models as references instead of their values.
type Encoder interface {
	Encode(task any) ([]byte, error)
}

// WithEncoder makes the client encode payloads with enc.
func WithEncoder(enc Encoder) ClientOption {
	return func(c *Client) error {
		if enc == nil {
			return fmt.Errorf("%w: WithEncoder needs an encoder", ErrInvalidConfig)
		}
		c.encoder = enc
		return nil
	}
}

// ClientOption configures a Client.
type ClientOption func(*Client) error

// WithDriver makes a under name available to tasks whose Config.Driver is name
// (the guide's multiple drivers in one application).
func WithDriver(name string, a Adapter) ClientOption {
	return func(c *Client) error {
		if name == "" || a == nil {
			return fmt.Errorf("%w: WithDriver needs a name and an adapter", ErrInvalidConfig)
		}
		c.named[name] = a
		return nil
	}
}

// NewClient returns a client whose tasks go to adapter unless their config
// names another driver.
func NewClient(adapter Adapter, opts ...ClientOption) (*Client, error) {
	if adapter == nil {
		return nil, fmt.Errorf("%w: NewClient needs an adapter, e.g. postgres.New(ctx, url)", ErrInvalidConfig)
	}
	c := &Client{adapter: adapter, named: map[string]Adapter{adapter.Name(): adapter}}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Adapter returns the client's default adapter.
func (c *Client) Adapter() Adapter { return c.adapter }

// DispatchOption overrides a task's configuration for one dispatch: the
// guide's on_queue, delay and retry_after. Options apply in any order.
type DispatchOption func(*dispatchOpts) error

type dispatchOpts struct {
	queue      string
	delay      time.Duration
	retryDelay time.Duration
	priority   *int16
	ext        dispatchExt // unique key, tags, metadata (unique.go, tags.go)
}

// OnQueue sends the job to queue name instead of the task's configured queue.
func OnQueue(name string) DispatchOption {
	return func(o *dispatchOpts) error {
		if err := ValidateQueueName(name); err != nil {
			return fmt.Errorf("OnQueue: %w", err)
		}
		o.queue = name
		return nil
	}
}

// Delay makes the job run d after dispatch. d must be positive.
func Delay(d time.Duration) DispatchOption {
	return func(o *dispatchOpts) error {
		if d <= 0 {
			return fmt.Errorf("%w: Delay(%v): the delay must be positive; dispatch without Delay to run at once", ErrInvalidConfig, d)
		}
		o.delay = d
		return nil
	}
}

// RetryAfter overrides the task's RetryDelay for this job. d must be positive,
// or RetryImmediately.
func RetryAfter(d time.Duration) DispatchOption {
	return func(o *dispatchOpts) error {
		if d <= 0 && d != RetryImmediately {
			return fmt.Errorf("%w: RetryAfter(%v): the retry delay must be positive, or queue.RetryImmediately", ErrInvalidConfig, d)
		}
		o.retryDelay = d
		return nil
	}
}

// WithPriority overrides the task's priority for this job: higher runs first
// within its queue.
func WithPriority(p int16) DispatchOption {
	return func(o *dispatchOpts) error { o.priority = &p; return nil }
}

// Dispatch stores task as a new job and returns its ID. The job runs when a
// worker serving its queue claims it.
func (c *Client) Dispatch(ctx context.Context, task any, opts ...DispatchOption) (uuid.UUID, error) {
	res, err := c.dispatch(ctx, nil, []any{task}, opts)
	if err != nil {
		return uuid.Nil, err
	}
	return res[0].ID, nil
}

// DispatchTx stores task as a new job inside the caller's transaction tx: the
// job exists (and wakes workers) only if tx commits. The Postgres adapter
// accepts pgx.Tx, *sql.Tx and *gorm.DB.
func (c *Client) DispatchTx(ctx context.Context, tx any, task any, opts ...DispatchOption) (uuid.UUID, error) {
	if tx == nil || isNil(tx) {
		return uuid.Nil, fmt.Errorf("%w: DispatchTx got a nil transaction", ErrTxUnsupported)
	}
	res, err := c.dispatch(ctx, tx, []any{task}, opts)
	if err != nil {
		return uuid.Nil, err
	}
	return res[0].ID, nil
}

// DispatchMany stores many tasks in one round trip per adapter, all or none,
// applying opts to each. It returns the IDs in the order of tasks.
func (c *Client) DispatchMany(ctx context.Context, tasks []any, opts ...DispatchOption) ([]uuid.UUID, error) {
	res, err := c.dispatch(ctx, nil, tasks, opts)
	if err != nil {
		return nil, err
	}
	return idsOf(res), nil
}

// DispatchManyTx is DispatchMany inside the caller's transaction.
func (c *Client) DispatchManyTx(ctx context.Context, tx any, tasks []any, opts ...DispatchOption) ([]uuid.UUID, error) {
	if tx == nil || isNil(tx) {
		return nil, fmt.Errorf("%w: DispatchManyTx got a nil transaction", ErrTxUnsupported)
	}
	res, err := c.dispatch(ctx, tx, tasks, opts)
	if err != nil {
		return nil, err
	}
	return idsOf(res), nil
}

func (c *Client) dispatch(ctx context.Context, tx any, tasks []any, opts []DispatchOption) ([]Dispatched, error) {
	if c == nil {
		return nil, ErrNoDefaultClient
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("%w: nothing to dispatch", ErrInvalidConfig)
	}
	var o dispatchOpts
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	// Group by adapter, keeping the first adapter's jobs in one slice in the
	// common case of a single backend.
	var order []Adapter
	groups := map[Adapter][]NewJob{}
	for i, t := range tasks {
		job, a, err := c.build(t, &o)
		if err != nil {
			if len(tasks) > 1 {
				return nil, fmt.Errorf("task %d: %w", i, err)
			}
			return nil, err
		}
		if _, seen := groups[a]; !seen {
			order = append(order, a)
			if len(order) == 1 {
				// Every task usually goes to one backend: size its slice once
				// (a NewJob is about 250 bytes; growing the slice job by job
				// allocated about four times that per job).
				groups[a] = make([]NewJob, 0, len(tasks)-i)
			}
		}
		groups[a] = append(groups[a], job)
	}
	if len(order) > 1 {
		names := make([]string, len(order))
		for i, a := range order {
			names[i] = a.Name()
		}
		if tx != nil {
			return nil, fmt.Errorf("%w: these tasks use %d different drivers (%v); a transaction belongs to one", ErrTxUnsupported, len(order), names)
		}
		return nil, fmt.Errorf("%w: these tasks go to %d different drivers (%v); a batch is stored all or none, which only one backend can promise: dispatch each driver's tasks in its own call", ErrMixedBatch, len(order), names)
	}
	a := order[0]
	return c.runDispatch(ctx, tx, a, groups[a])
}

func (c *Client) build(task any, o *dispatchOpts) (NewJob, Adapter, error) {
	if err := checkTask(task); err != nil {
		return NewJob{}, nil, err
	}
	kind, err := kindOf(task)
	if err != nil {
		return NewJob{}, nil, err
	}
	cfg, err := configOf(task).Resolve()
	if err != nil {
		return NewJob{}, nil, fmt.Errorf("%s: %w", kind, err)
	}
	a := c.adapter
	switch {
	case cfg.Adapter != nil:
		a = cfg.Adapter
	case cfg.Driver != "":
		var ok bool
		if a, ok = c.named[cfg.Driver]; !ok {
			return NewJob{}, nil, fmt.Errorf("%w: task %s asks for driver %q but the client has none by that name; add one with queue.WithDriver(%q, adapter)", ErrUnknownDriver, kind, cfg.Driver, cfg.Driver)
		}
	}
	if err := checkStrings(task); err != nil {
		return NewJob{}, nil, fmt.Errorf("tasq: %s: %w", kind, err)
	}
	var payload []byte
	if c.encoder != nil {
		payload, err = c.encoder.Encode(task)
	} else {
		payload, err = json.Marshal(task)
	}
	if err != nil {
		return NewJob{}, nil, fmt.Errorf("tasq: %s: cannot encode the task as a payload: %w", kind, err)
	}
	if i := nulEscape(payload); i >= 0 {
		// An encoder (a MarshalJSON method) produced a NUL character.
		return NewJob{}, nil, fmt.Errorf("tasq: %s: %w: its encoding holds a NUL character (\u0000 at byte %d), which PostgreSQL cannot store", kind, ErrInvalidPayload, i)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return NewJob{}, nil, fmt.Errorf("tasq: generate job id: %w", err)
	}
	job := NewJob{
		ID: id, Kind: kind, Queue: cfg.Queue, Payload: payload, Priority: cfg.Priority,
		MaxRetries: cfg.MaxRetries, RetryDelay: cfg.RetryDelay, Timeout: cfg.Timeout,
	}
	if o.queue != "" {
		job.Queue = o.queue
	}
	job.Delay = o.delay
	switch {
	case o.retryDelay == RetryImmediately:
		job.RetryDelay = 0
	case o.retryDelay > 0:
		job.RetryDelay = o.retryDelay
	}
	if o.priority != nil {
		job.Priority = *o.priority
	}
	if err := c.extend(task, &o.ext, &job); err != nil {
		return NewJob{}, nil, err
	}
	return job, a, nil
}

// Pending is a task with dispatch options gathered by chaining, the guide's
// fluent style: client.Task(t).OnQueue("high").Delay(time.Minute).Dispatch(ctx).
type Pending struct {
	c    *Client
	task any
	opts []DispatchOption
}

// Task starts a chained dispatch of task.
func (c *Client) Task(task any) *Pending { return &Pending{c: c, task: task} }

// OnQueue overrides the queue. See the function OnQueue.
func (p *Pending) OnQueue(name string) *Pending { p.opts = append(p.opts, OnQueue(name)); return p }

// Delay delays the job. See the function Delay.
func (p *Pending) Delay(d time.Duration) *Pending { p.opts = append(p.opts, Delay(d)); return p }

// RetryAfter overrides the retry delay. See the function RetryAfter.
func (p *Pending) RetryAfter(d time.Duration) *Pending {
	p.opts = append(p.opts, RetryAfter(d))
	return p
}

// Priority overrides the priority. See WithPriority.
func (p *Pending) Priority(n int16) *Pending { p.opts = append(p.opts, WithPriority(n)); return p }

// Dispatch dispatches the task with the gathered options.
func (p *Pending) Dispatch(ctx context.Context) (uuid.UUID, error) {
	return p.c.Dispatch(ctx, p.task, p.opts...)
}

// DispatchTx dispatches the task inside tx with the gathered options.
func (p *Pending) DispatchTx(ctx context.Context, tx any) (uuid.UUID, error) {
	return p.c.DispatchTx(ctx, tx, p.task, p.opts...)
}

// defaultClient is the one package-level client, the counterpart of the
// guide's set_global_config.
var defaultClient atomic.Pointer[Client]

// SetDefault makes c the client used by the package-level Dispatch functions.
func SetDefault(c *Client) { defaultClient.Store(c) }

// Default returns the client set with SetDefault, or nil.
func Default() *Client { return defaultClient.Load() }

// Dispatch dispatches task with the default client.
func Dispatch(ctx context.Context, task any, opts ...DispatchOption) (uuid.UUID, error) {
	c := Default()
	if c == nil {
		return uuid.Nil, ErrNoDefaultClient
	}
	return c.Dispatch(ctx, task, opts...)
}

// DispatchTx dispatches task inside tx with the default client.
func DispatchTx(ctx context.Context, tx any, task any, opts ...DispatchOption) (uuid.UUID, error) {
	c := Default()
	if c == nil {
		return uuid.Nil, ErrNoDefaultClient
	}
	return c.DispatchTx(ctx, tx, task, opts...)
}

// New starts a chained dispatch of task with the default client:
// queue.New(t).Delay(time.Minute).Dispatch(ctx).
func New(task any) *Pending { return &Pending{c: Default(), task: task} }
