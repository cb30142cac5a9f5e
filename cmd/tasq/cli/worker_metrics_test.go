package cli_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/internal/freeport"
	"github.com/tasqhq/tasq/queue"
)

// TestWorkerMetricsAddr: tasq worker --metrics-addr serves /metrics, which
// counts the jobs it ran and the queue depths after known work.
func TestWorkerMetricsAddr(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	a := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 1, AmountCents: 100})
	b := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 2, AmountCents: 200})
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		done <- run(demo.WithOutput(wctx, io.Discard), cli.Options{Registry: demoRegistry(t)},
			"worker", "--database-url", e.dsn, "--queues", "payments", "--poll-interval", "100ms", "--metrics-addr", addr)
	}()
	e.waitState(t, ctx, a, queue.StateCompleted, 20*time.Second)
	e.waitState(t, ctx, b, queue.StateCompleted, 20*time.Second)
	var body string
	want := []string{
		`tasq_jobs_started_total{kind="ProcessPayment",queue="payments"} 2`,
		`tasq_jobs_finished_total{kind="ProcessPayment",outcome="completed",queue="payments"} 2`,
		`tasq_job_run_seconds_count{kind="ProcessPayment",queue="payments"} 2`,
		`tasq_worker_gauge{what="running",`,
		`tasq_queue_jobs{queue="payments",state="completed"} 2`,
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		body = scrape(addr)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(body, w)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics after 20s:\n%s\nwant lines %q", body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if r := waitDone(t, done, 20*time.Second, "the worker command after cancel"); r.err != nil {
		t.Fatalf("worker: %v\n%s", r.err, r.errOut)
	}
}

func scrape(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
