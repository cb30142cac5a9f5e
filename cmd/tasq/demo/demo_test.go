package demo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/queue"
)

// attempt sets task's metadata as the worker would for the given 0-indexed attempt.
func attempt(task any, n, maxRetries int) {
	queue.SetMetadata(task, queue.Metadata{Attempt: n, MaxRetries: maxRetries})
}

func TestProcessPaymentFailsThenSucceeds(t *testing.T) {
	var out bytes.Buffer
	ctx := demo.WithOutput(context.Background(), &out)
	p := &demo.ProcessPayment{UserID: 123, AmountCents: 9999, GatewayTimeouts: 2}
	for n := range 2 {
		attempt(p, n, 10)
		if _, err := p.Handle(ctx); !errors.Is(err, demo.ErrGatewayTimeout) || !p.ShouldRetry(err) {
			t.Fatalf("attempt %d: err %v; want a gateway timeout worth retrying", n, err)
		}
	}
	attempt(p, 2, 10)
	res, err := p.Handle(ctx)
	if err != nil || res != (demo.PaymentResult{Status: "completed", UserID: 123, AmountCents: 9999}) {
		t.Fatalf("third attempt: %+v, %v", res, err)
	}
	if !strings.Contains(out.String(), "Processing payment: $99.99 for user 123 (attempt 3 of 11)") {
		t.Errorf("output %q", out.String())
	}
}

func TestProcessPaymentInvalidAmountIsNotRetried(t *testing.T) {
	var out bytes.Buffer
	ctx := demo.WithOutput(context.Background(), &out)
	p := &demo.ProcessPayment{UserID: 7, AmountCents: -500, GatewayTimeouts: 5}
	_, err := p.Handle(ctx)
	if !errors.Is(err, demo.ErrInvalidAmount) || p.ShouldRetry(err) {
		t.Fatalf("err %v, ShouldRetry %v; want ErrInvalidAmount, not retried", err, p.ShouldRetry(err))
	}
	p.Failed(ctx, err)
	if want := "Payment failed for user 7: invalid payment amount: -$5.00"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
}

func TestConfigsMirrorTheGuide(t *testing.T) {
	reg := queue.NewRegistry()
	if err := demo.Register(reg); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"SendEmail":      "emails retries=3 delay=1m0s timeout=0s blocking=false",
		"ProcessPayment": "payments retries=10 delay=30s timeout=1m0s blocking=false",
		"GenerateReport": "reports retries=3 delay=1m0s timeout=5m0s blocking=true",
	}
	for kind, w := range want {
		c, ok := reg.Config(kind)
		if got := fmt.Sprintf("%s retries=%d delay=%v timeout=%v blocking=%t", c.Queue, c.MaxRetries, c.RetryDelay, c.Timeout, c.Blocking); !ok || got != w {
			t.Errorf("%s: %s; want %s", kind, got, w)
		}
	}
	if err := demo.Register(reg); !errors.Is(err, queue.ErrDuplicateKind) {
		t.Errorf("registering twice: %v; want ErrDuplicateKind", err)
	}
}

func TestOutputDefaultsToStdout(t *testing.T) {
	if demo.Output(context.Background()) != os.Stdout {
		t.Error("Output without WithOutput is not os.Stdout")
	}
}

func TestFormatCents(t *testing.T) {
	for c, want := range map[int64]string{0: "$0.00", 5: "$0.05", 9999: "$99.99", -500: "-$5.00", 123456: "$1234.56"} {
		if got := demo.FormatCents(c); got != want {
			t.Errorf("FormatCents(%d) = %q, want %q", c, got, want)
		}
	}
}

// A task's Handle can be run directly in a unit test, as the guide's
// "Testing Class-Based Tasks" does; SetMetadata makes it a given attempt.
func ExampleSendEmail() {
	task := &demo.SendEmail{To: "user@example.com", Subject: "Welcome", Body: "Welcome!"}
	queue.SetMetadata(task, queue.Metadata{Attempt: 0})
	ctx := demo.WithOutput(context.Background(), os.Stdout)
	result, err := task.Handle(ctx)
	fmt.Println(result, err)
	// Output:
	//   Sending email to user@example.com: Welcome
	// Email sent to user@example.com <nil>
}
