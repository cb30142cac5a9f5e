package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// orderTask charges an order in a transaction of its own and completes its
// job in it (queue.CompleteTx). Mode picks how the first attempt goes.
type orderTask struct {
	queue.TaskBase
	Mode string

	pool   *pgxpool.Pool
	client *queue.Client
}

func (*orderTask) Kind() string { return "tx_order" }

func (*orderTask) Config() queue.Config {
	return queue.Config{Queue: "orders", MaxRetries: 3, RetryDelay: queue.RetryImmediately}
}

var errDeclined = errors.New("card declined")

func (t *orderTask) Handle(ctx context.Context) (struct{}, error) {
	tx, err := t.pool.Begin(ctx)
	if err != nil {
		return struct{}{}, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `INSERT INTO charges (job_id, attempt) VALUES ($1, $2)`, t.ID(), t.Attempt()); err != nil {
		return struct{}{}, err
	}
	first := t.Attempt() == 0
	switch t.Mode {
	case "followup":
		// The receipt job commits with the charge and the completion.
		if _, err := t.client.DispatchTx(ctx, tx, &receiptTask{Order: t.ID()}); err != nil {
			return struct{}{}, err
		}
		if first {
			return struct{}{}, errDeclined // rolled back: no charge, no receipt
		}
	case "nocommit":
		if err := queue.CompleteTx(ctx, tx); err != nil {
			return struct{}{}, err
		}
		if first {
			return struct{}{}, tx.Rollback(ctx) // nil, but nothing committed
		}
		return struct{}{}, tx.Commit(ctx)
	case "errafter":
		if err := queue.CompleteTx(ctx, tx); err != nil {
			return struct{}{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, errors.New("a mistake after the commit")
	case "cancelled":
		// An operator cancels the job while its transaction is open: the
		// completion's guard fails, and the charge is rolled back.
		if err := t.client.Cancel(context.WithoutCancel(ctx), t.ID()); err != nil {
			return struct{}{}, err
		}
		if err := queue.CompleteTx(context.WithoutCancel(ctx), tx); err != nil {
			return struct{}{}, err // ErrClaimLost
		}
		return struct{}{}, queue.Permanent(errors.New("CompleteTx succeeded on a cancelled job"))
	case "twice":
		if err := queue.CompleteTxWithResult(ctx, tx, "first"); err != nil {
			return struct{}{}, err
		}
		err := queue.CompleteTx(ctx, tx)
		if !errors.Is(err, queue.ErrNoTxCompletion) {
			return struct{}{}, queue.Permanent(errors.New("the second CompleteTx did not say ErrNoTxCompletion"))
		}
		return struct{}{}, tx.Commit(ctx)
	}
	if err := queue.CompleteTx(ctx, tx); err != nil {
		return struct{}{}, err
	}
	return struct{}{}, tx.Commit(ctx)
}

// receiptTask is the follow-up job of an order.
type receiptTask struct {
	Order uuid.UUID
}

func (*receiptTask) Kind() string                                 { return "tx_receipt" }
func (*receiptTask) Config() queue.Config                         { return queue.Config{Queue: "orders"} }
func (*receiptTask) Handle(ctx context.Context) (struct{}, error) { return struct{}{}, nil }

func newOrderEnv(t *testing.T) (*env, *runningWorker) {
	t.Helper()
	e := newEnv(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE charges (job_id uuid NOT NULL, attempt int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *orderTask { return &orderTask{pool: e.pool, client: e.client} })
	queue.MustRegister(reg, &receiptTask{})
	return e, e.startWorker(reg, worker.Config{Queues: []string{"orders"}})
}

func (e *env) charges(id uuid.UUID) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM charges WHERE job_id = $1`, id).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// A transactional handler's follow-up job commits with its completion or
// not at all: the first attempt, which fails after dispatching it, leaves
// neither charge nor receipt; the second leaves one of each.
func TestCompleteTxFollowUpJobsCommitWithTheCompletion(t *testing.T) {
	t.Parallel()
	e, _ := newOrderEnv(t)
	id, err := e.client.Dispatch(e.ctx, &orderTask{Mode: "followup"})
	if err != nil {
		t.Fatal(err)
	}
	j := e.waitState(id, queue.StateCompleted, 30*time.Second)
	if j.Attempt != 2 || len(j.Errors) != 1 || j.Errors[0].Error == "" {
		t.Errorf("attempt %d, errors %+v; want 2 attempts and the decline", j.Attempt, j.Errors)
	}
	if n := e.charges(id); n != 1 {
		t.Errorf("charges = %d, want 1", n)
	}
	waitFor(t, 30*time.Second, "the receipt to complete", func() bool {
		return e.count(`kind = 'tx_receipt' AND state = 'completed'`) == 1
	})
	if n := e.count(`kind = 'tx_receipt'`); n != 1 {
		t.Errorf("receipt jobs = %d, want 1 (the rolled-back attempt's must not exist)", n)
	}
}

// Handle returning nil after a CompleteTx whose transaction did not commit
// is a failed attempt (ErrTxNotCommitted), retried; the retry commits.
func TestCompleteTxNotCommittedIsRetried(t *testing.T) {
	t.Parallel()
	e, _ := newOrderEnv(t)
	id, err := e.client.Dispatch(e.ctx, &orderTask{Mode: "nocommit"})
	if err != nil {
		t.Fatal(err)
	}
	j := e.waitState(id, queue.StateCompleted, 30*time.Second)
	if j.Attempt != 2 || len(j.Errors) != 1 {
		t.Fatalf("attempt %d, errors %+v; want 2 attempts, 1 error", j.Attempt, j.Errors)
	}
	if want := queue.ErrTxNotCommitted.Error(); !strings.Contains(j.Errors[0].Error, want) {
		t.Errorf("error %q does not say %q", j.Errors[0].Error, want)
	}
	if n := e.charges(id); n != 1 {
		t.Errorf("charges = %d, want 1", n)
	}
}

// An error Handle returns after its transaction committed the completion
// changes nothing: the job stays completed after one attempt, not retried.
func TestCompleteTxErrorAfterCommitKeepsTheJobCompleted(t *testing.T) {
	t.Parallel()
	e, w := newOrderEnv(t)
	id, err := e.client.Dispatch(e.ctx, &orderTask{Mode: "errafter"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(id, queue.StateCompleted, 30*time.Second)
	waitFor(t, 30*time.Second, "the worker to settle the attempt", func() bool {
		s := w.Stats()
		return s.Completed == 1 && s.Pending == 0 && s.Running == 0
	})
	s := w.Stats()
	if s.Retried != 0 || s.Failed != 0 || s.Stale != 0 {
		t.Errorf("stats %+v: want no retry, failure or refused outcome", s)
	}
	if j := e.job(id); j.State != queue.StateCompleted || j.Attempt != 1 || len(j.Errors) != 0 {
		t.Errorf("job %+v: want completed after 1 attempt, no errors", j)
	}
	if n := e.charges(id); n != 1 {
		t.Errorf("charges = %d, want 1", n)
	}
}

// CompleteTx works once per attempt, storing its result; a second call
// says ErrNoTxCompletion. Outside a worker's Handle it says so too.
func TestCompleteTxOncePerAttempt(t *testing.T) {
	t.Parallel()
	e, _ := newOrderEnv(t)
	id, err := e.client.Dispatch(e.ctx, &orderTask{Mode: "twice"})
	if err != nil {
		t.Fatal(err)
	}
	j := e.waitState(id, queue.StateCompleted, 30*time.Second)
	if string(j.Result) != `"first"` || len(j.Errors) != 0 {
		t.Errorf("result %s, errors %+v; want \"first\", none", j.Result, j.Errors)
	}
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	if err := queue.CompleteTx(e.ctx, tx); !errors.Is(err, queue.ErrNoTxCompletion) {
		t.Errorf("CompleteTx outside Handle: %v, want ErrNoTxCompletion", err)
	}
}

// An operator's cancel while the handler's transaction is open: CompleteTx
// says ErrClaimLost, the charge rolls back, the job stays cancelled, and the
// worker writes nothing (it counts the execution stale, not completed).
func TestCompleteTxAfterAnOperatorCancel(t *testing.T) {
	t.Parallel()
	e, w := newOrderEnv(t)
	id, err := e.client.Dispatch(e.ctx, &orderTask{Mode: "cancelled"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the worker to settle the attempt", func() bool {
		s := w.Stats()
		return s.Stale+s.Completed+s.Failed+s.Retried >= 1 && s.Running == 0 && s.Pending == 0
	})
	s := w.Stats()
	if s.Completed != 0 || s.Failed != 0 || s.Retried != 0 || s.Stale != 1 {
		t.Errorf("stats %+v: want one stale execution and nothing else", s)
	}
	if j := e.job(id); j.State != queue.StateCancelled {
		t.Errorf("job is %s, want cancelled", j.State)
	}
	if n := e.charges(id); n != 0 {
		t.Errorf("charges = %d, want 0 (rolled back)", n)
	}
}
