package queue_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/queue"
)

// NotifyWarehouse runs on Redis, but is dispatched in PostgreSQL
// transactions through the outbox.
type NotifyWarehouse struct{ OrderID int64 }

func (*NotifyWarehouse) Config() queue.Config {
	return queue.Config{Queue: "warehouse", Driver: "redis"}
}
func (*NotifyWarehouse) Handle(ctx context.Context) (struct{}, error) {
	return struct{}{}, nil
}

// WithOutbox lets a task bound for Redis or SQS be dispatched inside a
// PostgreSQL transaction: the job is written to the outbox with the
// transaction, and a relay (postgres NewRelay, `tasq outbox relay`, or
// `tasq worker --outbox-to`) delivers it after the commit. Rolled back, it
// is never sent.
func ExampleWithOutbox() {
	var pg queue.Adapter   // postgres.New(ctx, databaseURL): also the outbox
	var rd queue.Adapter   // redis.New(ctx, redisURL)
	var pool *pgxpool.Pool // the app's pool, on pg's database
	ctx := context.Background()

	outbox, _ := pg.(queue.Outbox)
	client, err := queue.NewClient(pg, queue.WithDriver("redis", rd), queue.WithOutbox(outbox))
	if err != nil {
		log.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE orders SET state = 'paid' WHERE id = $1`, 42); err != nil {
		log.Fatal(err)
	}
	if _, err := client.DispatchTx(ctx, tx, &NotifyWarehouse{OrderID: 42}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil { // the order and the job, or neither
		log.Fatal(err)
	}
}
