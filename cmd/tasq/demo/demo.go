// Package demo holds the task types that `tasq demo` dispatches and runs:
// the guide's "Complete Working Example" written as Go tasks.
//
//   - SendEmail: an ordinary task on the "emails" queue with 3 retries,
//     60 s apart, that returns a string.
//   - ProcessPayment: a critical task on the "payments" queue with 10
//     retries, a 60 s timeout, a ShouldRetry hook that gives up at once on
//     invalid input, and a Failed hook.
//   - GenerateReport: a Blocking task (the guide's SyncTask) on the
//     "reports" queue that holds its goroutine for a second.
//
// The stock tasq binary registers these types (see Register), so `tasq
// worker` can run the jobs that `tasq demo` or an application dispatches.
//
// Tasks print what they do to the writer carried by their context (see
// WithOutput), or to os.Stdout when there is none.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// Register adds every demo task type to reg.
func Register(reg *queue.Registry) error {
	return errors.Join(
		queue.Register(reg, &SendEmail{}),
		queue.Register(reg, &ProcessPayment{}),
		queue.Register(reg, &GenerateReport{}),
	)
}

type outputKey struct{}

// WithOutput returns a context under which the demo tasks print to w instead
// of os.Stdout. Give it to the worker's Run: the context of every Handle and
// Failed call derives from it. Tasks run concurrently, so w must be safe for
// concurrent use.
func WithOutput(ctx context.Context, w io.Writer) context.Context {
	return context.WithValue(ctx, outputKey{}, w)
}

// Output returns the writer the demo tasks print to under ctx: the one given
// to WithOutput, or os.Stdout.
func Output(ctx context.Context) io.Writer {
	if w, ok := ctx.Value(outputKey{}).(io.Writer); ok && w != nil {
		return w
	}
	return os.Stdout
}

// sleep waits for d or until ctx is done, the way a task waiting on I/O should.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SendEmail sends an email (here: pretends to, in 100 ms). It is the guide's
// SendEmail: queue "emails", 3 retries, 60 s apart.
type SendEmail struct {
	queue.TaskBase
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// Config puts SendEmail on the "emails" queue with 3 retries, 60 s apart.
func (*SendEmail) Config() queue.Config {
	return queue.Config{Queue: "emails", MaxRetries: 3, RetryDelay: 60 * time.Second}
}

// Handle sends the email and returns a confirmation, stored as the job's result.
func (t *SendEmail) Handle(ctx context.Context) (string, error) {
	fmt.Fprintf(Output(ctx), "  Sending email to %s: %s\n", t.To, t.Subject)
	if err := sleep(ctx, 100*time.Millisecond); err != nil {
		return "", err
	}
	return "Email sent to " + t.To, nil
}

// ErrGatewayTimeout is the transient error ProcessPayment simulates for its
// first GatewayTimeouts attempts. It is worth retrying.
var ErrGatewayTimeout = errors.New("payment gateway timeout")

// ErrInvalidAmount is returned by ProcessPayment for an amount that is not
// positive. Retrying cannot fix it, so ShouldRetry says no and the job fails
// at once.
var ErrInvalidAmount = errors.New("invalid payment amount")

// ProcessPayment charges a user (here: pretends to, in 200 ms). It is the
// guide's ProcessPayment: queue "payments", 10 retries 30 s apart, a 60 s
// timeout per attempt, and a Failed hook.
type ProcessPayment struct {
	queue.TaskBase
	UserID int64 `json:"user_id"`
	// AmountCents is the amount to charge, in cents: money is never a float.
	AmountCents int64 `json:"amount_cents"`
	// GatewayTimeouts is how many attempts fail with ErrGatewayTimeout before
	// the charge goes through, to show retries. 0 charges at once.
	GatewayTimeouts int `json:"gateway_timeouts,omitempty"`
}

// PaymentResult is what a completed ProcessPayment job stores as its result.
type PaymentResult struct {
	Status      string `json:"status"`
	UserID      int64  `json:"user_id"`
	AmountCents int64  `json:"amount_cents"`
}

// Config puts ProcessPayment on the "payments" queue with 10 retries, 30 s
// apart, and a 60 s timeout per attempt.
func (*ProcessPayment) Config() queue.Config {
	return queue.Config{Queue: "payments", MaxRetries: 10, RetryDelay: 30 * time.Second, Timeout: 60 * time.Second}
}

// Handle charges the payment. It fails with ErrInvalidAmount for an amount
// that is not positive, and with ErrGatewayTimeout on its first
// GatewayTimeouts attempts.
func (t *ProcessPayment) Handle(ctx context.Context) (PaymentResult, error) {
	m := t.Metadata()
	fmt.Fprintf(Output(ctx), "  Processing payment: %s for user %d (attempt %d of %d)\n",
		FormatCents(t.AmountCents), t.UserID, m.Attempt+1, m.MaxRetries+1)
	if t.AmountCents <= 0 {
		return PaymentResult{}, fmt.Errorf("%w: %s; amounts must be positive", ErrInvalidAmount, FormatCents(t.AmountCents))
	}
	if t.Attempt() < t.GatewayTimeouts {
		return PaymentResult{}, fmt.Errorf("charge user %d: %w", t.UserID, ErrGatewayTimeout)
	}
	if err := sleep(ctx, 200*time.Millisecond); err != nil {
		return PaymentResult{}, err
	}
	return PaymentResult{Status: "completed", UserID: t.UserID, AmountCents: t.AmountCents}, nil
}

// ShouldRetry retries every error except ErrInvalidAmount.
func (t *ProcessPayment) ShouldRetry(err error) bool {
	return !errors.Is(err, ErrInvalidAmount)
}

// Failed runs once when the payment has failed for good: here it reports the
// failure; a real application would alert someone or compensate.
func (t *ProcessPayment) Failed(ctx context.Context, err error) {
	fmt.Fprintf(Output(ctx), "  Payment failed for user %d: %v\n", t.UserID, err)
}

// FormatCents formats an amount in cents as dollars: 9999 -> "$99.99",
// -500 -> "-$5.00".
func FormatCents(c int64) string {
	sign := ""
	u := uint64(c)
	if c < 0 {
		sign, u = "-", uint64(-c)
	}
	return fmt.Sprintf("%s$%d.%02d", sign, u/100, u%100)
}

// GenerateReport builds a report with blocking code: it is the guide's
// SyncTask. Its Config sets Blocking, so workers run it on their smaller pool
// of blocking slots, where it cannot take every slot from the other tasks.
type GenerateReport struct {
	queue.TaskBase
	ReportID int `json:"report_id"`
}

// Config puts GenerateReport on the "reports" queue as a Blocking task with a
// 5-minute timeout.
func (*GenerateReport) Config() queue.Config {
	return queue.Config{Queue: "reports", Timeout: 5 * time.Minute, Blocking: true}
}

// Handle generates the report. It stands for CPU-bound or blocking library
// code, so it sleeps without looking at ctx, as such code would.
func (t *GenerateReport) Handle(ctx context.Context) (string, error) {
	fmt.Fprintf(Output(ctx), "  Generating report %d (blocking for 1s)\n", t.ReportID)
	time.Sleep(time.Second)
	return fmt.Sprintf("Report %d generated", t.ReportID), nil
}
