package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/queue"
)

// tasq top --once prints one frame: each queue's depths, its lag and the
// completions per minute between its two samples.
func TestTopOnce(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 1, AmountCents: 100})
	e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 2, AmountCents: 200})
	e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 3, AmountCents: 300}, queue.OnQueue("idle"))
	r := run(ctx, cli.Options{}, "top", "--database-url", e.dsn, "--once", "--interval", "100ms")
	if r.err != nil {
		t.Fatalf("top: %v\n%s", r.err, r.errOut)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(r.out, "\n") {
		if f := strings.Fields(line); len(f) == 7 {
			rows[f[0]] = f[1:]
		}
	}
	if h := rows["QUEUE"]; strings.Join(h, " ") != "AVAILABLE RUNNING WAITING FAILED LAG COMPLETED/MIN" {
		t.Fatalf("header %q; output:\n%s", h, r.out)
	}
	for q, avail := range map[string]string{"payments": "2", "idle": "1"} {
		row := rows[q]
		if row == nil {
			t.Fatalf("no row for queue %s; output:\n%s", q, r.out)
		}
		if row[0] != avail || row[1] != "0" || row[5] != "0" {
			t.Errorf("queue %s: %q, want %s available, none running, 0 completed/min", q, row, avail)
		}
		if lag, err := time.ParseDuration(row[4]); err != nil || lag <= 0 || lag > time.Minute {
			t.Errorf("queue %s: lag %q, want a positive duration under a minute", q, row[4])
		}
	}
	if n := strings.Count(r.out, "tasq top "); n != 1 {
		t.Errorf("--once printed %d frames:\n%s", n, r.out)
	}
}
