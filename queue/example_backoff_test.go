package queue_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// rateLimitedError is what a partner's API client returns when it is asked
// to slow down: try again after RetryAfter.
type rateLimitedError struct{ RetryAfter time.Duration }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("rate limited: retry after %v", e.RetryAfter)
}

// fetchStock stands for a call to a partner's API.
func fetchStock(ctx context.Context, sku string) (int, error) {
	if sku == "busy" {
		return 0, &rateLimitedError{RetryAfter: 30 * time.Second}
	}
	return 12, nil
}

// SyncInventory asks a rate-limited partner for stock levels.
type SyncInventory struct {
	queue.TaskBase
	SKU string
}

func (*SyncInventory) Config() queue.Config {
	return queue.Config{Queue: "partners", MaxRetries: queue.NoRetries}
}

func (t *SyncInventory) Handle(ctx context.Context) (int, error) {
	n, err := fetchStock(ctx, t.SKU)
	var limited *rateLimitedError
	if errors.As(err, &limited) {
		// Not a failure: come back when the partner allows, without
		// spending an attempt (this task has no retries to spend).
		return 0, queue.Snooze(limited.RetryAfter)
	}
	return n, err
}

// Snooze puts the job off without spending an attempt: a worker runs it
// again 30 s later with the same Attempt(), as often as it snoozes. Its
// Failed hook does not run and its error history stays empty. A task that
// snoozes is tested like any other: call Handle and look at the error.
func ExampleSnooze() {
	task := &SyncInventory{SKU: "busy"}
	_, err := task.Handle(context.Background())
	var snooze *queue.SnoozeError
	if errors.As(err, &snooze) {
		fmt.Println("snoozed for", snooze.Delay)
	}
	fmt.Println(queue.IsSnooze(err), task.Attempt())
	// Output:
	// snoozed for 30s
	// true 0
}

// ChargeCard backs off exponentially: 10 s after the first attempt, then
// 20 s, 40 s, ... up to 5 minutes, each wait shortened by up to 20% at
// random so that cards declined together during an outage are not all
// retried in the same instant.
type ChargeCard struct {
	queue.TaskBase
	PaymentID int64
}

func (*ChargeCard) Config() queue.Config {
	return queue.Config{Queue: "payments", MaxRetries: 6, RetryDelay: 10 * time.Second,
		Backoff: queue.Exponential{Max: 5 * time.Minute, Jitter: 0.2}}
}

func (t *ChargeCard) Handle(ctx context.Context) (string, error) {
	return "charged", nil
}

// Exponential with Base 0 grows from the task's RetryDelay (or the
// dispatch's RetryAfter). DelayWith shows the waits without the jitter's
// randomness; a worker calls Delay, which draws it.
func ExampleExponential() {
	cfg := (&ChargeCard{}).Config()
	backoff := cfg.Backoff.(queue.Exponential)
	for attempt := range cfg.MaxRetries {
		longest := backoff.DelayWith(attempt, cfg.RetryDelay, 0)
		shortest := time.Duration(float64(longest) * (1 - backoff.Jitter))
		fmt.Printf("after attempt %d: %v to %v\n", attempt, shortest, longest)
	}
	// Output:
	// after attempt 0: 8s to 10s
	// after attempt 1: 16s to 20s
	// after attempt 2: 32s to 40s
	// after attempt 3: 1m4s to 1m20s
	// after attempt 4: 2m8s to 2m40s
	// after attempt 5: 4m0s to 5m0s
}

// ImportFeed decides each wait itself: what the partner asked for when it
// is rate limited, an exponential backoff otherwise.
type ImportFeed struct {
	queue.TaskBase
	URL string
}

func (t *ImportFeed) Handle(ctx context.Context) (int, error) { return 0, nil }

// NextRetry wins over Config.Backoff. attempt counts like Attempt(): 0 is
// the first attempt.
func (t *ImportFeed) NextRetry(attempt int, err error) time.Duration {
	var limited *rateLimitedError
	if errors.As(err, &limited) {
		return limited.RetryAfter
	}
	return queue.Exponential{Base: time.Second, Max: time.Minute}.Delay(attempt, 0)
}

// A task with a NextRetry method is a queue.RetryScheduler; test it by
// calling NextRetry.
func ExampleRetryScheduler() {
	var task queue.RetryScheduler = &ImportFeed{URL: "https://example.com/feed"}
	fmt.Println(task.NextRetry(0, &rateLimitedError{RetryAfter: 45 * time.Second}))
	fmt.Println(task.NextRetry(0, errors.New("connection reset")))
	fmt.Println(task.NextRetry(3, errors.New("connection reset")))
	fmt.Println(task.NextRetry(20, errors.New("connection reset")))
	// Output:
	// 45s
	// 1s
	// 8s
	// 1m0s
}
