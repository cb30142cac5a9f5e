package cli_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/queue"
)

// TestQueuesCommands pauses, limits, lists and resumes a queue through the
// CLI, and checks what the adapter then reports.
func TestQueuesCommands(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	opts := cli.Options{Logger: quietLogger()}
	tasq := func(args ...string) result {
		t.Helper()
		r := run(ctx, opts, append(args, "--database-url", e.dsn)...)
		if r.err != nil {
			t.Fatalf("tasq %s: %v\n%s", strings.Join(args, " "), r.err, r.errOut)
		}
		return r
	}
	if r := tasq("queues", "list"); !strings.Contains(r.out, "no queue is paused or limited") {
		t.Fatalf("queues list on a fresh database:\n%s", r.out)
	}
	tasq("queues", "pause", "emails")
	tasq("queues", "limit", "reports", "--max-running", "2", "--max-starts", "10", "--per", "1m",
		"--key", "customer.id", "--key-max-running", "1")
	r := tasq("queues", "list")
	for _, want := range []string{"emails", "since", "reports", "≤ 2 running, ≤ 10 starts per 1m0s; per customer.id: ≤ 1 running"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("queues list lacks %q:\n%s", want, r.out)
		}
	}
	states, err := e.adapter.QueueStates(ctx)
	if err != nil || len(states) != 2 {
		t.Fatalf("QueueStates = %+v, %v", states, err)
	}
	want := queue.QueueLimits{Total: queue.Limit{MaxRunning: 2, MaxStarts: 10, Per: time.Minute},
		KeyField: "customer.id", PerKey: queue.Limit{MaxRunning: 1}}
	if !states[0].Paused || states[1].Limits != want {
		t.Fatalf("QueueStates = %+v; want emails paused and reports limited to %+v", states, want)
	}
	tasq("queues", "resume", "emails")
	tasq("queues", "limit", "reports", "--clear")
	if r := tasq("queues", "list"); !strings.Contains(r.out, "no queue is paused or limited") {
		t.Fatalf("queues list after resume and clear:\n%s", r.out)
	}

	// Bad input is refused with the reason, before anything is changed.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"queues", "limit", "q"}, "give at least one limit"},
		{[]string{"queues", "limit", "q", "--clear", "--max-running", "1"}, "without other limit flags"},
		{[]string{"queues", "limit", "q", "--max-starts", "5"}, "Per is 0s"},
		{[]string{"queues", "limit", "q", "--key-max-running", "1"}, "need KeyField"},
		{[]string{"queues", "pause", "has space"}, "whitespace"},
	} {
		r := run(ctx, opts, append(c.args, "--database-url", e.dsn)...)
		if r.err == nil || !strings.Contains(r.err.Error(), c.want) {
			t.Errorf("tasq %s: %v; want an error saying %q", strings.Join(c.args, " "), r.err, c.want)
		}
	}
	if states, _ := e.adapter.QueueStates(ctx); len(states) != 0 {
		t.Fatalf("refused commands changed the queues: %+v", states)
	}
}

// TestQueuesUnsupported: on a backend whose claims cannot honour pauses,
// the command says so instead of pretending.
func TestQueuesUnsupported(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newBackendEnv(t, ctx, "redis")
	r := run(ctx, cli.Options{Logger: quietLogger()}, "queues", "pause", "emails", "--driver", "redis", "--database-url", e.url)
	var ue *cli.UnsupportedError
	if !errors.As(r.err, &ue) || !errors.Is(r.err, errors.ErrUnsupported) || !strings.Contains(r.err.Error(), "`tasq queues` needs postgres") {
		t.Fatalf("queues pause on redis: %v; want an UnsupportedError naming postgres", r.err)
	}
}
