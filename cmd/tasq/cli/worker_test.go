package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

// TestWorkerCommandRunsUntilCancelled starts `tasq worker`, waits until it
// has completed a demo job, cancels its context (as SIGINT does) and checks
// that it shuts down cleanly.
func TestWorkerCommandRunsUntilCancelled(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	email := e.dispatch(t, ctx, &demo.SendEmail{To: "bob@example.com", Subject: "Hello"})
	payment := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 5, AmountCents: 1250})

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var taskOut syncBuffer
	done := make(chan result, 1)
	go func() {
		// No --queues: it serves every queue of the registered task types.
		// No Logger: the default text handler writes to the command's stderr.
		done <- run(demo.WithOutput(wctx, &taskOut), cli.Options{Registry: demoRegistry(t)},
			"worker", "--database-url", e.dsn, "--poll-interval", "100ms", "--shutdown-grace", "2s")
	}()
	e.waitState(t, ctx, email, queue.StateCompleted, 20*time.Second)
	e.waitState(t, ctx, payment, queue.StateCompleted, 20*time.Second)
	cancel()
	r := waitDone(t, done, 20*time.Second, "the worker command after cancel")
	if r.err != nil {
		t.Fatalf("worker: %v\n%s", r.err, r.errOut)
	}
	for _, want := range []string{"Sending email to bob@example.com: Hello", "Processing payment: $12.50 for user 5"} {
		if !strings.Contains(taskOut.String(), want) {
			t.Errorf("task output %q lacks %q", taskOut.String(), want)
		}
	}
	if want := `msg=serving queues=emails,payments,reports kinds=GenerateReport,ProcessPayment,SendEmail`; !strings.Contains(r.errOut, want) {
		t.Errorf("worker logs lack %q:\n%s", want, r.errOut)
	}
}

// TestWorkerCommandMounted mounts NewWorkerCommand in an application's own
// root, as the package documentation shows, and runs a batch with --max-tasks.
func TestWorkerCommandMounted(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	id := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 1, AmountCents: 100}, queue.OnQueue("billing"))

	root := &cobra.Command{Use: "myapp"}
	root.AddCommand(cli.NewWorkerCommand(cli.Options{Registry: demoRegistry(t), Logger: quietLogger()}))
	done := make(chan result, 1)
	go func() {
		done <- execute(ctx, root, "worker", "--database-url", e.dsn, "--queues", "billing", "--max-tasks", "1", "--poll-interval", "100ms")
	}()
	r := waitDone(t, done, 30*time.Second, "myapp worker --max-tasks 1")
	if r.err != nil {
		t.Fatalf("myapp worker: %v\n%s", r.err, r.errOut)
	}
	j, err := e.adapter.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var res demo.PaymentResult
	if err := json.Unmarshal(j.Result, &res); err != nil || j.State != queue.StateCompleted || res.Status != "completed" || res.AmountCents != 100 {
		t.Fatalf("job after the batch run: %s with result %s (%v); want completed", j.State, j.Result, err)
	}
}

// TestWorkerCommandStopsWhenTheSchemaIsGone: a worker whose table is
// dropped under it cannot go on; the command stops and says to migrate,
// rather than retrying its claims forever.
func TestWorkerCommandStopsWhenTheSchemaIsGone(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	id := e.dispatch(t, ctx, &demo.SendEmail{To: "dee@example.com", Subject: "Hi"})
	done := make(chan result, 1)
	go func() {
		done <- run(ctx, cli.Options{Registry: demoRegistry(t), Logger: quietLogger()},
			"worker", "--database-url", e.dsn, "--queues", "emails", "--poll-interval", "50ms", "--shutdown-grace", "2s")
	}()
	e.waitState(t, ctx, id, queue.StateCompleted, 20*time.Second)
	if err := migrations.Down(ctx, e.dsn); err != nil {
		t.Fatalf("migrations.Down: %v", err)
	}
	r := waitDone(t, done, 30*time.Second, "the worker command after its table was dropped")
	if !errors.Is(r.err, queue.ErrNotMigrated) || !strings.Contains(r.err.Error(), "the worker stopped") ||
		!strings.Contains(r.err.Error(), "tasq migrate up") {
		t.Fatalf("worker after migrate down: %v; want ErrNotMigrated saying the worker stopped and to run tasq migrate up", r.err)
	}
}
