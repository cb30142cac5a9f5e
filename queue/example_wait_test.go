package queue_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// Receipt is what ChargePayment's Handle returns; Wait hands it to the caller.
type Receipt struct {
	ChargeID string
	Cents    int64
}

// ChargePayment is a task with a result.
type ChargePayment struct {
	queue.TaskBase
	Customer string
	Cents    int64
}

func (t *ChargePayment) Handle(ctx context.Context) (Receipt, error) {
	return Receipt{ChargeID: "ch_" + t.Customer, Cents: t.Cents}, nil
}

// WaitResult waits for a job's result, here from a web handler in a process
// other than the worker's. Give it a deadline: it waits through retries.
func ExampleWaitResult() {
	var client *queue.Client // from queue.NewClient(adapter)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	id, err := client.Dispatch(ctx, &ChargePayment{Customer: "cus_42", Cents: 1999})
	if err != nil {
		log.Fatal(err)
	}
	receipt, err := queue.WaitResult[Receipt](ctx, client, id)
	var failed *queue.WaitError
	switch {
	case err == nil:
		fmt.Println("charged:", receipt.ChargeID)
	case errors.Is(err, queue.ErrJobFailed) && errors.As(err, &failed):
		fmt.Println("the payment failed:", failed.LastError)
	case errors.Is(err, queue.ErrJobCancelled):
		fmt.Println("the payment was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Println("still running; look again later with client.Wait(ctx, id)")
	default:
		log.Fatal(err)
	}
}

// Wait returns the result as stored (JSON), for callers that decode it
// themselves or only need to know that the job is done.
func ExampleClient_Wait() {
	var (
		client *queue.Client
		id     uuid.UUID // from Dispatch, perhaps in another process
	)
	raw, err := client.Wait(context.Background(), id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("job %s returned %s\n", id, raw)
}

// Cancel stops a job from the application, as `tasq jobs cancel ID` does: a
// waiting job never runs, and a running one's Handle sees its context
// cancelled within moments (the worker is told by NOTIFY), with
// queue.ErrCancelledByOperator as the cause.
func ExampleClient_Cancel() {
	var (
		client *queue.Client
		id     uuid.UUID
	)
	err := client.Cancel(context.Background(), id)
	switch {
	case err == nil:
		fmt.Println("cancelled")
	case errors.Is(err, queue.ErrJobState):
		fmt.Println("too late: it has finished already")
	case errors.Is(err, queue.ErrJobNotFound):
		fmt.Println("no such job")
	default:
		log.Fatal(err)
	}
}

// Export is a long task that stops cleanly when an operator cancels it and
// says why it stopped.
type Export struct {
	queue.TaskBase
	Table string
}

func (t *Export) Handle(ctx context.Context) (int, error) {
	rows := 0
	for {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), queue.ErrCancelledByOperator) {
				log.Printf("export of %s cancelled by an operator after %d rows; cleaning up", t.Table, rows)
			}
			return rows, ctx.Err() // not stored: the job is cancelled already
		case <-time.After(10 * time.Millisecond):
			rows += 100 // one batch of work
		}
	}
}

// A Handle that runs long watches its context; context.Cause tells an
// operator's cancel from a timeout or a shutdown.
func ExampleErrCancelledByOperator() {
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &Export{})
	// ... worker.New(adapter, reg, cfg).Run(ctx); elsewhere: client.Cancel(ctx, id)
}
