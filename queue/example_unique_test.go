package queue_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/queue"
)

// SyncCustomer re-reads one customer from the CRM. Many events ask for the
// same sync; one waiting job per customer is enough.
type SyncCustomer struct {
	CustomerID int64  `json:"customer_id"`
	Reason     string `json:"reason"`
}

// Unique declares the key on the task: the kind and customer_id, while a
// job waits, runs or waits for a retry. Reason is not part of the key.
func (*SyncCustomer) Unique() queue.UniqueOpts {
	return queue.UniqueOpts{Fields: []string{"customer_id"}}
}

func (t *SyncCustomer) Handle(ctx context.Context) (string, error) { return "synced", nil }

// A task that declares Unique is deduplicated on every dispatch: the second
// dispatch returns the waiting job's ID, and DispatchResult says it was a
// duplicate.
func ExampleUniquer() {
	ctx := context.Background()
	var client *queue.Client // from queue.NewClient(postgresAdapter)
	first, err := client.DispatchResult(ctx, &SyncCustomer{CustomerID: 42, Reason: "address changed"})
	if err != nil {
		log.Fatal(err)
	}
	second, err := client.DispatchResult(ctx, &SyncCustomer{CustomerID: 42, Reason: "new order"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(second.ID == first.ID, second.Duplicate) // true true
}

// WithUnique makes one dispatch unique, whatever the task declares. Here a
// search index rebuild is debounced: every dispatch moves the one waiting
// job 30 seconds into the future and gives it the newest payload, so a
// burst of edits runs one rebuild, 30 s after the last edit.
func ExampleWithUnique() {
	ctx := context.Background()
	var client *queue.Client
	debounce := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueReplace, ByQueue: true})
	d, err := client.DispatchResult(ctx, &SendNotification{Message: "rebuild index"}, debounce, queue.Delay(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	if d.Replaced {
		fmt.Println("moved the waiting job", d.ID)
	}
}

// UniqueThrottle keeps at most one job per period: a digest mail at most
// once an hour, however often it is asked for, and whether the last one
// completed or failed.
func ExampleUniqueMode_throttle() {
	ctx := context.Background()
	var client *queue.Client
	hourly := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueThrottle, Period: time.Hour})
	id, err := client.Dispatch(ctx, &SendEmail{To: "team@example.com", Subject: "Digest"}, hourly)
	fmt.Println(id, err) // this hour's job, new or not
}

// Two dispatches of one key in two transactions: the second waits until the
// first transaction ends, then is a duplicate (it committed) or stores its
// own job (it rolled back). The key is never held by an uncommitted job that
// could vanish.
func ExampleClient_DispatchResultTx() {
	ctx := context.Background()
	var (
		pool   *pgxpool.Pool
		client *queue.Client
	)
	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	d, err := client.DispatchResultTx(ctx, tx, &SyncCustomer{CustomerID: 7})
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.ID, d.Duplicate)
}

// Tags and metadata travel with the job, outside the payload: find the
// jobs with `tasq jobs list --tag tenant:42`, or in SQL with
// WHERE tags @> '{tenant:42}'; `tasq jobs show` prints both.
func ExampleWithTags() {
	ctx := context.Background()
	var client *queue.Client
	_, err := client.Dispatch(ctx, &SendEmail{To: "ada@example.com", Subject: "Invoice"},
		queue.WithTags("tenant:42", "invoice"),
		queue.WithMeta(map[string]any{"request_id": "7f3c", "by": "billing-api"}))
	if err != nil {
		log.Fatal(err)
	}
}
