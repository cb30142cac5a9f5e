package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
)

// Errors of transactional completion (CompleteTx).
var (
	// ErrClaimLost means the execution no longer holds its job: its lease
	// expired and the job was rescued, or an operator cancelled or retried
	// it. CompleteTx returns it (wrapped) when its guard matches no row:
	// roll the transaction back, so that the work done in it is undone
	// with the completion it could not write.
	ErrClaimLost = errors.New("tasq: the execution no longer holds its job")
	// ErrNoTxCompletion means CompleteTx ran where it cannot complete a job:
	// outside a worker's Handle, on a backend that cannot complete jobs in
	// a transaction (it is no TxCompleter), or a second time in one attempt.
	ErrNoTxCompletion = errors.New("tasq: no transactional completion here")
	// ErrTxNotCommitted is the attempt's error when Handle called CompleteTx
	// and returned nil, but the transaction did not commit (it was rolled
	// back or left open): the job is retried like any failed attempt.
	ErrTxNotCommitted = errors.New("tasq: Handle completed its job in a transaction that did not commit")
)

// TxCompleter is the capability of backends that can write a job's
// completion inside the caller's database transaction, so that the work the
// transaction did and the job's completion commit together or not at all.
//
// The write is guarded as Source.Finish is: only while the job is running
// under the execution's claim token, claimed by workerID. A stale execution
// (its lease expired and the job was rescued, or an operator acted on it)
// gets ErrClaimLost and its transaction must roll back. Because the guard
// and the work share a transaction, the job's effect and its completion are
// stored exactly once between them, whatever crashes.
type TxCompleter interface {
	// CompleteTx marks the job of lease completed, with result (nil: none),
	// inside tx (a transaction type the adapter knows, as for
	// TxInserter.InsertTx). The job stays locked until tx ends.
	CompleteTx(ctx context.Context, tx any, workerID string, lease Lease, result json.RawMessage) error
	// Settled reports whether the job of lease is no longer running under
	// lease.Token, and whether it completed under it: a transaction that
	// called CompleteTx committed (settled and completed), or the claim was
	// lost meanwhile (settled only: rescued, cancelled, retried or deleted).
	// The worker asks it once Handle returns, since only the database knows
	// how the transaction ended.
	Settled(ctx context.Context, workerID string, lease Lease) (settled, completed bool, err error)
}

// TxCompletion is the transactional completion of one attempt on a
// backend that is a TxCompleter: CompleteTx finds it in Handle's context.
// Workers enable it with Execution.EnableTxCompletion (or, for a context
// of their own, NewTxCompletion); task code never needs it.
type TxCompletion struct {
	tc       TxCompleter
	workerID string
	lease    Lease
	used     atomic.Bool
}

type txCompletionKey struct{}

// NewTxCompletion returns ctx carrying the transactional completion of one
// execution (j, claimed by workerID from tc), and the completion, which the
// worker asks after Handle returns (Used).
func NewTxCompletion(ctx context.Context, tc TxCompleter, workerID string, j *Job) (context.Context, *TxCompletion) {
	c := &TxCompletion{tc: tc, workerID: workerID, lease: j.Lease()}
	return context.WithValue(ctx, txCompletionKey{}, c), c
}

// Used reports whether Handle called CompleteTx (successfully or not) in
// this attempt: the job's completion is then the transaction's to commit,
// and the worker asks the backend how it ended instead of writing one.
func (c *TxCompletion) Used() bool { return c.used.Load() }

// CompleteTx completes the running job inside tx, the caller's database
// transaction (on PostgreSQL: a pgx.Tx, a *sql.Tx or a *gorm.DB in a
// transaction, on the worker's database). Call it from Handle after the
// transaction's other writes, just before committing it, then commit and
// return nil:
//
//	func (t *ChargeTask) Handle(ctx context.Context) (struct{}, error) {
//		tx, err := pool.Begin(ctx)
//		if err != nil {
//			return struct{}{}, err
//		}
//		defer tx.Rollback(ctx)
//		if _, err := tx.Exec(ctx, `INSERT INTO charges ...`); err != nil {
//			return struct{}{}, err
//		}
//		if err := queue.CompleteTx(ctx, tx); err != nil {
//			return struct{}{}, err // ErrClaimLost: another execution has the job
//		}
//		return struct{}{}, tx.Commit(ctx)
//	}
//
// The transaction's writes and the completion then commit together: a
// crash before the commit undoes both and the job runs again; after it,
// both stand and the job is done. An execution that lost its claim gets
// ErrClaimLost and must roll back, so its writes never land beside those of
// the execution that took over. Jobs dispatched in the same transaction
// (Client.DispatchTx) commit with the completion, or not at all.
//
// The job's result is nil; use CompleteTxWithResult to store one. What
// Handle returns afterwards is not stored: when it returns an error after a
// committed completion, the job stays completed. When Handle returns nil
// but the transaction did not commit, the attempt fails with
// ErrTxNotCommitted and is retried. CompleteTx may succeed once per attempt;
// it returns ErrNoTxCompletion outside a worker's Handle, on a backend that
// is no TxCompleter, and when called again.
func CompleteTx(ctx context.Context, tx any) error {
	return CompleteTxWithResult(ctx, tx, nil)
}

// CompleteTxWithResult is CompleteTx storing result (encoded as JSON) as the
// job's result.
func CompleteTxWithResult(ctx context.Context, tx any, result any) error {
	c, _ := ctx.Value(txCompletionKey{}).(*TxCompletion)
	if av, ok := ctx.Value(metadataKey{}).(*attemptValues); ok && av.tx != nil {
		c = av.tx // the innermost: Handle's own attempt
	}
	if c == nil {
		return fmt.Errorf("%w: CompleteTx needs the context a worker passes to Handle, on a backend that can complete jobs in a transaction (postgres)", ErrNoTxCompletion)
	}
	var raw json.RawMessage
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			return fmt.Errorf("%w: CompleteTx result: %v", ErrInvalidPayload, err)
		}
		if nulEscape(b) >= 0 {
			return fmt.Errorf("%w: CompleteTx result holds a NUL character (\\u0000), which PostgreSQL cannot store", ErrInvalidPayload)
		}
		raw = b
	}
	if !c.used.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: CompleteTx was already called in this attempt", ErrNoTxCompletion)
	}
	return c.tc.CompleteTx(ctx, tx, c.workerID, c.lease, raw)
}
