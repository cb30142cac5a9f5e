package queue

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// DispatchResult is Dispatch that also says whether the task was a duplicate
// of a unique job (see WithUnique): Dispatched.Duplicate, and Replaced when
// it moved the existing job. Dispatch itself returns the existing job's ID
// and no error for a duplicate.
func (c *Client) DispatchResult(ctx context.Context, task any, opts ...DispatchOption) (Dispatched, error) {
	res, err := c.dispatch(ctx, nil, []any{task}, opts)
	if err != nil {
		return Dispatched{}, err
	}
	return res[0], nil
}

// DispatchResultTx is DispatchResult inside the caller's transaction tx (see
// DispatchTx). When another transaction has stored a job with the same
// unique key and not committed yet, it waits for that transaction: the
// task is a duplicate if it commits, and is stored if it rolls back.
func (c *Client) DispatchResultTx(ctx context.Context, tx any, task any, opts ...DispatchOption) (Dispatched, error) {
	if tx == nil || isNil(tx) {
		return Dispatched{}, fmt.Errorf("%w: DispatchResultTx got a nil transaction", ErrTxUnsupported)
	}
	res, err := c.dispatch(ctx, tx, []any{task}, opts)
	if err != nil {
		return Dispatched{}, err
	}
	return res[0], nil
}

// DispatchManyResults is DispatchMany that says, per task, whether it was a
// duplicate of a unique job. Two tasks of the batch with the same unique
// key make one job: the first (UniqueSkip, UniqueThrottle) or the last
// replacing one (UniqueReplace) is stored, and the others are its
// duplicates.
func (c *Client) DispatchManyResults(ctx context.Context, tasks []any, opts ...DispatchOption) ([]Dispatched, error) {
	return c.dispatch(ctx, nil, tasks, opts)
}

// DispatchManyResultsTx is DispatchManyResults inside the caller's
// transaction.
func (c *Client) DispatchManyResultsTx(ctx context.Context, tx any, tasks []any, opts ...DispatchOption) ([]Dispatched, error) {
	if tx == nil || isNil(tx) {
		return nil, fmt.Errorf("%w: DispatchManyResultsTx got a nil transaction", ErrTxUnsupported)
	}
	return c.dispatch(ctx, tx, tasks, opts)
}

// DispatchResult dispatches the task with the gathered options. See
// Client.DispatchResult.
func (p *Pending) DispatchResult(ctx context.Context) (Dispatched, error) {
	return p.c.DispatchResult(ctx, p.task, p.opts...)
}

// idsOf returns the IDs of res.
func idsOf(res []Dispatched) []uuid.UUID {
	ids := make([]uuid.UUID, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

// store hands one adapter's jobs to it: Insert or InsertTx, or, when a job
// has a unique key, the adapter's UniqueInserter or UniqueTxInserter.
func (c *Client) store(ctx context.Context, tx any, a Adapter, jobs []NewJob) ([]Dispatched, error) {
	var ti TxInserter
	if tx != nil {
		var ok bool
		if ti, ok = a.(TxInserter); !ok {
			if c.outbox != nil {
				return c.toOutbox(ctx, tx, a, jobs) // outbox.go
			}
			return nil, fmt.Errorf("%w: driver %s cannot store jobs inside a transaction; dispatch after the commit instead, or through an outbox (queue.WithOutbox)", ErrTxUnsupported, a.Name())
		}
	}
	if HasUnique(jobs) {
		var res []Dispatched
		var err error
		if tx != nil {
			ui, ok := a.(UniqueTxInserter)
			if !ok {
				return nil, fmt.Errorf("%w: driver %s cannot enforce unique keys inside a transaction", ErrUniqueUnsupported, a.Name())
			}
			res, err = ui.InsertUniqueTx(ctx, tx, jobs)
		} else {
			ui, ok := a.(UniqueInserter)
			if !ok {
				return nil, fmt.Errorf("%w: driver %s cannot enforce unique keys; dispatch unique tasks to postgres", ErrUniqueUnsupported, a.Name())
			}
			res, err = ui.InsertUnique(ctx, jobs)
		}
		if err != nil {
			return nil, fmt.Errorf("tasq: dispatch to %s: %w", a.Name(), err)
		}
		if len(res) != len(jobs) {
			return nil, fmt.Errorf("tasq: dispatch to %s: the adapter returned %d results for %d jobs", a.Name(), len(res), len(jobs))
		}
		return res, nil
	}
	var err error
	if tx != nil {
		err = ti.InsertTx(ctx, tx, jobs)
	} else {
		err = a.Insert(ctx, jobs)
	}
	if err != nil {
		return nil, fmt.Errorf("tasq: dispatch to %s: %w", a.Name(), err)
	}
	res := make([]Dispatched, len(jobs))
	for i := range jobs {
		res[i].ID = jobs[i].ID
	}
	return res, nil
}

// extend applies the dispatch options of unique.go and tags.go to job.
func (c *Client) extend(task any, x *dispatchExt, job *NewJob) error {
	x.setTags(job)
	x.deps.setDeps(job)
	return c.setUnique(task, x.unique, job)
}
