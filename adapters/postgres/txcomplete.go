package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

var _ queue.TxCompleter = (*Adapter)(nil)

// completeTxSQL completes one job inside a caller's transaction. Its WHERE
// clause is the completion guard of finishSQL: the job must be running under
// the execution's claim token ($2), claimed by worker $3. The guard and the
// caller's writes share the transaction, and the UPDATE locks the row until
// it ends: a rescue or an operator's cancel waits for it, then finds the job
// completed (committed) or still running under the same claim (rolled back).
// The first column says whether the transaction is on this adapter's
// database (the instance guard of the transactional insert); the second
// whether the guard matched. A job of a limited queue wakes that queue's
// workers ($8) when the transaction commits, as a finished batch does.
const completeTxSQL = `
WITH here AS (
    SELECT EXISTS (SELECT 1 FROM tasq_instance WHERE id = $5) AND current_database() = $6 AS ok
), done AS (
    UPDATE tasq_jobs AS j SET
        state = 'completed',
        result = CASE WHEN $4::text <> '' THEN $4::jsonb ELSE j.result END,
        finished_at = now(),
        lease_expires_at = NULL
    WHERE j.id = $1 AND j.claim_token = $2 AND j.state::text = 'running' AND j.attempted_by = $3
      AND (SELECT ok FROM here)
    RETURNING j.queue
), woken AS (
    SELECT pg_notify($7, queue) FROM done WHERE $8
)
SELECT (SELECT ok FROM here), (SELECT count(*) FROM done), (SELECT count(*) FROM woken)`

// CompleteTx implements queue.TxCompleter: it completes the job of lease
// inside tx (a pgx.Tx, a *sql.Tx or a *gorm.DB in a transaction, on this
// adapter's database), guarded by the claim token. It returns an error
// wrapping queue.ErrClaimLost when the execution no longer holds the job,
// and queue.ErrTxUnsupported for a value that is not such a transaction.
func (a *Adapter) CompleteTx(ctx context.Context, tx any, workerID string, lease queue.Lease, result json.RawMessage) error {
	if lease.Token <= 0 {
		return fmt.Errorf("%w: lease of job %s has no claim token", queue.ErrInvalidConfig, lease.ID)
	}
	if len(result) > 0 && !json.Valid(result) {
		return fmt.Errorf("%w: the result of job %s is not valid JSON", queue.ErrInvalidPayload, lease.ID)
	}
	query, err := txQuery(ctx, tx)
	if err != nil {
		return err
	}
	var here bool
	var done, woken int64
	err = query(ctx, a.sql.q(completeTxSQL),
		[]any{pgUUID(lease.ID), lease.Token, workerID, string(result), pgUUID(a.instance), a.database, a.sql.channel, a.anyControlled()},
		func(scan func(...any) error) error { return scan(&here, &done, &woken) })
	switch {
	case err != nil:
		return wrapErr("complete job in transaction", err)
	case !here:
		return fmt.Errorf("%w: the transaction is on another database than the worker's adapter", queue.ErrTxUnsupported)
	case done == 0:
		return fmt.Errorf("%w: job %s (claim %d): its lease expired and it was rescued, or an operator cancelled or retried it; roll the transaction back", queue.ErrClaimLost, lease.ID, lease.Token)
	}
	return nil
}

// settledSQL reads what Settled needs: the job's state and claim.
const settledSQL = `SELECT state::text, claim_token, coalesce(attempted_by, '') FROM tasq_jobs WHERE id = $1`

// Settled implements queue.TxCompleter: it reports whether the job of lease
// is no longer running under it, claimed by workerID, and whether it
// completed under it. A job completed under the lease is announced to
// waiting clients (queue.JobAwaiter), as Finish does for the outcomes it
// writes.
func (a *Adapter) Settled(ctx context.Context, workerID string, lease queue.Lease) (settled, completed bool, err error) {
	var state, by string
	var token int64
	err = a.pool.QueryRow(ctx, a.sql.q(settledSQL), pgUUID(lease.ID)).Scan(&state, &token, &by)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, false, nil // deleted by an operator
	}
	if err != nil {
		return false, false, wrapErr("read job state", err)
	}
	if state == string(queue.StateRunning) && token == lease.Token && by == workerID {
		return false, false, nil
	}
	completed = state == string(queue.StateCompleted) && token == lease.Token && by == workerID
	if completed {
		a.finished([]queue.Outcome{{ID: lease.ID, Token: lease.Token, State: queue.StateCompleted}})
	}
	return true, completed, nil
}
