package queue_test

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/queue"
)

// ChargeOrder charges an order exactly once: the charge row, the receipt
// job and the job's completion commit in one transaction, guarded by the
// job's claim. A worker killed before the commit leaves none of them (the
// job runs again); after it, all of them (the job is done). An execution
// that lost its claim gets queue.ErrClaimLost and rolls back.
type ChargeOrder struct {
	queue.TaskBase
	OrderID int64
	Cents   int64

	db     *pgxpool.Pool // injected with queue.RegisterFactory
	client *queue.Client
}

// SendReceipt is ChargeOrder's follow-up job.
type SendReceipt struct{ OrderID int64 }

func (t *SendReceipt) Handle(ctx context.Context) (struct{}, error) { return struct{}{}, nil }

func (t *ChargeOrder) Handle(ctx context.Context) (uuid.UUID, error) {
	tx, err := t.db.Begin(ctx)
	if err != nil {
		return uuid.Nil, err
	}
	defer tx.Rollback(ctx) // a no-op after Commit
	if _, err := tx.Exec(ctx, `INSERT INTO charges (order_id, cents, job_id) VALUES ($1, $2, $3)`, t.OrderID, t.Cents, t.ID()); err != nil {
		return uuid.Nil, err
	}
	receipt, err := t.client.DispatchTx(ctx, tx, &SendReceipt{OrderID: t.OrderID})
	if err != nil {
		return uuid.Nil, err
	}
	if err := queue.CompleteTxWithResult(ctx, tx, receipt); err != nil {
		return uuid.Nil, err // queue.ErrClaimLost: another execution has the job
	}
	return receipt, tx.Commit(ctx)
}

// CompleteTx makes a task's database work and its job's completion one
// transaction: exactly-once effects, where the work is in the queue's
// PostgreSQL database.
func ExampleCompleteTx() {
	var pool *pgxpool.Pool   // the app's pool, on the queue's database
	var client *queue.Client // queue.NewClient(adapter)
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *ChargeOrder { return &ChargeOrder{db: pool, client: client} })
	queue.MustRegister(reg, &SendReceipt{})
	// worker.New(adapter, reg, worker.Config{}) runs them.
}
