package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// fakeTxCompleter records CompleteTx calls.
type fakeTxCompleter struct {
	calls   int
	worker  string
	lease   queue.Lease
	tx      any
	result  json.RawMessage
	failing error
}

func (f *fakeTxCompleter) CompleteTx(_ context.Context, tx any, workerID string, lease queue.Lease, result json.RawMessage) error {
	f.calls++
	f.tx, f.worker, f.lease, f.result = tx, workerID, lease, result
	return f.failing
}

func (f *fakeTxCompleter) Settled(context.Context, string, queue.Lease) (bool, bool, error) {
	return false, false, nil
}

// CompleteTx hands the worker's lease, the transaction and the encoded
// result to the backend once; a result that cannot be stored is refused
// before the backend sees it and does not use up the attempt's one call.
func TestCompleteTxPassesTheLeaseOnce(t *testing.T) {
	f := &fakeTxCompleter{}
	j := &queue.Job{ID: uuid.New(), Token: 7}
	ctx, c := queue.NewTxCompletion(context.Background(), f, "w1", j)
	if c.Used() {
		t.Fatal("Used before any call")
	}
	if err := queue.CompleteTxWithResult(ctx, "tx", make(chan int)); !errors.Is(err, queue.ErrInvalidPayload) {
		t.Errorf("unencodable result: %v, want ErrInvalidPayload", err)
	}
	if err := queue.CompleteTxWithResult(ctx, "tx", "a\x00b"); !errors.Is(err, queue.ErrInvalidPayload) {
		t.Errorf("NUL in result: %v, want ErrInvalidPayload", err)
	}
	if f.calls != 0 || c.Used() {
		t.Fatalf("a refused result reached the backend (%d calls) or used the attempt's call", f.calls)
	}
	if err := queue.CompleteTxWithResult(ctx, "tx", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if f.calls != 1 || f.worker != "w1" || f.lease != j.Lease() || f.tx != "tx" || string(f.result) != `{"n":1}` {
		t.Errorf("backend got %+v", f)
	}
	if !c.Used() {
		t.Error("Used is false after a call")
	}
	if err := queue.CompleteTx(ctx, "tx"); !errors.Is(err, queue.ErrNoTxCompletion) || f.calls != 1 {
		t.Errorf("second call: %v (%d backend calls), want ErrNoTxCompletion and no call", err, f.calls)
	}
	if err := queue.CompleteTx(context.Background(), "tx"); !errors.Is(err, queue.ErrNoTxCompletion) {
		t.Errorf("outside a worker: %v, want ErrNoTxCompletion", err)
	}
	// The backend's refusal comes back as it is.
	f2 := &fakeTxCompleter{failing: queue.ErrClaimLost}
	ctx2, _ := queue.NewTxCompletion(context.Background(), f2, "w1", j)
	if err := queue.CompleteTx(ctx2, "tx"); !errors.Is(err, queue.ErrClaimLost) {
		t.Errorf("backend refusal: %v, want ErrClaimLost", err)
	}
}
