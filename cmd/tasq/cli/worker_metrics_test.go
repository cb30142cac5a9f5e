package cli_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/internal/freeport"
	"github.com/tasqhq/tasq/queue"
)

// TestWorkerMetricsAddr: tasq worker --metrics-addr serves /metrics, which
// counts the jobs it ran, the claims it timed, and the queue depths and lags
// after known work: a job waits on a queue the worker does not serve.
func TestWorkerMetricsAddr(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	a := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 1, AmountCents: 100})
	b := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 2, AmountCents: 200})
	e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 3, AmountCents: 300}, queue.OnQueue("unserved"))
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
		`tasq_queue_jobs{queue="unserved",state="available"} 1`,
		`tasq_queue_lag_seconds{queue="payments"} 0` + "\n",
		`tasq_queue_lag_seconds{queue="unserved"} `,
		`tasq_claim_seconds_count{queue="payments"} `,
		`tasq_finish_batch_size_sum 2` + "\n",
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
	// The unserved queue's job has waited since before the worker started.
	if v, ok := metricValue(body, `tasq_queue_lag_seconds{queue="unserved"}`); !ok || v <= 0 || v > 120 {
		t.Errorf("tasq_queue_lag_seconds{queue=\"unserved\"} = %v (present %v), want in (0, 120]", v, ok)
	}
	if v, _ := metricValue(body, `tasq_claim_seconds_count{queue="payments"}`); v < 1 {
		t.Errorf("tasq_claim_seconds_count{queue=\"payments\"} = %v, want at least 1", v)
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

// metricValue returns the value of the series named exactly series (name
// and labels as exposed) in a /metrics page.
func metricValue(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}
