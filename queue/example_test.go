package queue_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// SendNotification is the guide's simplest task: its exported fields are the
// payload, Handle does the work and returns a result.
type SendNotification struct {
	Message string
}

func (t *SendNotification) Handle(ctx context.Context) (string, error) {
	fmt.Println("Notification:", t.Message)
	return "Sent: " + t.Message, nil
}

// A task is a plain struct, so it is tested by building it and calling
// Handle, as in the guide's testing section.
func Example() {
	task := &SendNotification{Message: "Hello, World!"}
	result, err := task.Handle(context.Background())
	fmt.Println(result, err)
	// Output:
	// Notification: Hello, World!
	// Sent: Hello, World! <nil>
}

// SendEmail carries the guide's class-level configuration in Config.
type SendEmail struct {
	queue.TaskBase
	To, Subject, Body string
}

func (*SendEmail) Config() queue.Config {
	return queue.Config{Queue: "emails", MaxRetries: 5, RetryDelay: 2 * time.Minute, Timeout: 30 * time.Second}
}

func (t *SendEmail) Handle(ctx context.Context) (bool, error) {
	fmt.Printf("Sending email to %s: %s\n", t.To, t.Subject)
	return true, nil
}

// Dispatch returns the job's ID at once; a worker runs it later.
func ExampleClient_Dispatch() {
	ctx := context.Background()
	adapter, err := postgres.New(ctx, os.Getenv("TASQ_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	client, err := queue.NewClient(adapter)
	if err != nil {
		log.Fatal(err)
	}
	id, err := client.Dispatch(ctx, &SendEmail{To: "user@example.com", Subject: "Welcome", Body: "Welcome!"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Task dispatched with ID:", id)

	// The guide's on_queue, delay and retry_after, in any order.
	_, err = client.Dispatch(ctx, &SendEmail{To: "user@example.com", Subject: "Reminder"},
		queue.OnQueue("low-priority"), queue.Delay(5*time.Minute), queue.RetryAfter(3*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
}

// Chaining reads like the guide's method chaining.
func ExampleClient_Task() {
	var client *queue.Client // from queue.NewClient
	id, err := client.Task(&SendEmail{To: "user@example.com", Subject: "Chained"}).
		OnQueue("critical").
		RetryAfter(3 * time.Minute).
		Delay(30 * time.Second).
		Dispatch(context.Background())
	fmt.Println(id, err)
}

// DispatchTx makes the job part of the caller's transaction: it exists only
// if the transaction commits. pgx.Tx, *sql.Tx and *gorm.DB all work.
func ExampleClient_DispatchTx() {
	ctx := context.Background()
	var (
		pool   *pgxpool.Pool // the application's pool
		client *queue.Client
	)
	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var userID int64
	if err := tx.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1) RETURNING id`, "new@example.com").Scan(&userID); err != nil {
		log.Fatal(err)
	}
	if _, err := client.DispatchTx(ctx, tx, &SendEmail{To: "new@example.com", Subject: "Welcome"}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil { // the user and the email job, or neither
		log.Fatal(err)
	}
}

// ProcessOrder has all three lifecycle hooks.
type ProcessOrder struct {
	queue.TaskBase
	OrderID, UserID int
}

var errValidation = errors.New("validation failed")

func (*ProcessOrder) Config() queue.Config {
	return queue.Config{Queue: "orders", MaxRetries: 3, RetryDelay: time.Minute}
}

func (t *ProcessOrder) Handle(ctx context.Context) (map[string]any, error) {
	if t.OrderID <= 0 {
		return nil, fmt.Errorf("order %d: %w", t.OrderID, errValidation)
	}
	return map[string]any{"order_id": t.OrderID, "status": "completed"}, nil
}

// ShouldRetry: validation errors are final, everything else is retried.
func (t *ProcessOrder) ShouldRetry(err error) bool {
	return !errors.Is(err, errValidation)
}

// Failed runs once, after the last attempt failed: compensate and alert here.
func (t *ProcessOrder) Failed(ctx context.Context, err error) {
	fmt.Printf("Order %d failed permanently: %v\n", t.OrderID, err)
}

// Hooks are methods, so they are tested like Handle.
func Example_lifecycleHooks() {
	task := &ProcessOrder{OrderID: -1, UserID: 7}
	_, err := task.Handle(context.Background())
	fmt.Println("retry?", task.ShouldRetry(err))
	task.Failed(context.Background(), err)
	// Output:
	// retry? false
	// Order -1 failed permanently: order -1: validation failed
}

// LoggedTask reads its metadata: ID, 0-indexed attempt, dispatch time.
type LoggedTask struct{ queue.TaskBase }

func (t *LoggedTask) Handle(ctx context.Context) (string, error) {
	return fmt.Sprintf("task %s executing (attempt %d)", t.ID(), t.Attempt()+1), nil
}

// Workers set the metadata before each attempt; tests can set it by hand.
func ExampleTaskBase() {
	task := &LoggedTask{}
	queue.SetMetadata(task, queue.Metadata{ID: uuid.MustParse("01890a5d-ac96-774b-bcce-b302099a8057"), Attempt: 1})
	msg, _ := task.Handle(context.Background())
	fmt.Println(msg)
	// Output: task 01890a5d-ac96-774b-bcce-b302099a8057 executing (attempt 2)
}

// GenerateReport blocks a thread, like the guide's SyncTask: Blocking keeps
// such tasks on the worker's separate, smaller pool.
type GenerateReport struct{ ReportID int }

func (GenerateReport) Config() queue.Config {
	return queue.Config{Queue: "reports", Timeout: 5 * time.Minute, Blocking: true}
}

func (t GenerateReport) Handle(ctx context.Context) (string, error) {
	time.Sleep(10 * time.Millisecond) // blocking work
	return fmt.Sprintf("Report %d generated", t.ReportID), nil
}

// A worker runs beside the application with the task types it may meet.
func ExampleRegister() {
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &SendEmail{})
	queue.MustRegister(reg, &ProcessOrder{})
	queue.MustRegister(reg, GenerateReport{})
	fmt.Println(reg.Kinds())

	var adapter *postgres.Adapter // from postgres.New
	if adapter != nil {
		w, err := worker.New(adapter, reg, worker.Config{Queues: []string{"orders", "emails", "reports"}, Concurrency: 20})
		if err != nil {
			log.Fatal(err)
		}
		go w.Run(context.Background()) // cancel the context to shut down gracefully
	}
	// Output: [GenerateReport ProcessOrder SendEmail]
}

// Function tasks are plain functions registered under a name.
func ExampleNewFunc() {
	type resizeArgs struct {
		Path  string
		Width int
	}
	resize := queue.NewFunc("resize_image", queue.Config{Queue: "images"},
		func(ctx context.Context, a resizeArgs) (string, error) {
			return fmt.Sprintf("%s resized to %dpx", a.Path, a.Width), nil
		})
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, resize); err != nil {
		log.Fatal(err)
	}
	call := resize.With(resizeArgs{Path: "cat.png", Width: 200})
	fmt.Println(call.Kind())
	// client.Dispatch(ctx, call) stores it like any task.
	// Output: resize_image
}

// Tasks can name another driver; the client resolves it.
func ExampleWithDriver() {
	var pg, other queue.Adapter // e.g. postgres.New(...) and another adapter
	if pg == nil {
		return
	}
	client, err := queue.NewClient(pg, queue.WithDriver("redis", other))
	if err != nil {
		log.Fatal(err)
	}
	queue.SetDefault(client) // the guide's set_global_config
}
