package queue

import (
	"context"
	"errors"
	"fmt"
)

// ErrJobExists means a job with the given ID is stored already. Adapters
// that can tell (redis) wrap it when an insert meets an existing ID, so that
// a relay delivering a job a second time (its first delivery went through
// but was not recorded) knows the job is there.
var ErrJobExists = errors.New("tasq: a job with this ID exists already")

// Outbox is the capability of a backend that can hold jobs bound for
// another backend inside the caller's transaction: a transactional outbox.
// PostgreSQL is one: a task for Redis or SQS dispatched with DispatchTx in a
// PostgreSQL transaction is written to the outbox table in that
// transaction, and a relay delivers it to its backend after the commit, at
// least once (adapters/postgres Relay). Rolled back, it is never sent.
type Outbox interface {
	// OutboxTx stores jobs for the backend registered as driver inside tx.
	OutboxTx(ctx context.Context, tx any, driver string, jobs []NewJob) error
}

// WithOutbox makes DispatchTx (and the other transactional dispatches) of
// tasks bound for a backend that cannot store jobs in the caller's
// transaction (Redis, SQS) go through o, the outbox of the database the
// transaction is on, instead of failing with ErrTxUnsupported. The jobs keep
// their IDs; a relay delivers them after the commit.
func WithOutbox(o Outbox) ClientOption {
	return func(c *Client) error {
		if o == nil {
			return fmt.Errorf("%w: WithOutbox needs an outbox (a postgres adapter)", ErrInvalidConfig)
		}
		c.outbox = o
		return nil
	}
}

// toOutbox stores the jobs of a for adapter a in the client's outbox, in tx.
// What a cannot store (unique keys, tags, dependencies) is refused now,
// not by the relay after the commit.
func (c *Client) toOutbox(ctx context.Context, tx any, a Adapter, jobs []NewJob) ([]Dispatched, error) {
	if err := CheckNewJobs(jobs); err != nil {
		return nil, err
	}
	if err := CheckPlainJobs(a.Name(), jobs); err != nil {
		return nil, err
	}
	if err := c.outbox.OutboxTx(ctx, tx, a.Name(), jobs); err != nil {
		return nil, fmt.Errorf("tasq: dispatch to %s through the outbox: %w", a.Name(), err)
	}
	res := make([]Dispatched, len(jobs))
	for i := range jobs {
		res[i].ID = jobs[i].ID
	}
	return res, nil
}
