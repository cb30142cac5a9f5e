package tasqprom_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqprom"
	"github.com/tasqhq/tasq/worker"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// Ship succeeds unless Fail is set; it never retries.
type Ship struct {
	queue.TaskBase
	Fail bool
}

func (*Ship) Config() queue.Config {
	return queue.Config{Queue: "shipping", MaxRetries: queue.NoRetries}
}

func (s *Ship) Handle(ctx context.Context) (string, error) {
	if s.Fail {
		return "", errors.New("no courier")
	}
	return "sent", nil
}

// TestScrapeAfterKnownWork: three jobs complete, one fails, two wait on
// another queue; /metrics says exactly that.
func TestScrapeAfterKnownWork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := postgres.New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m := tasqprom.New()
	client, err := queue.NewClient(a, queue.WithDispatchMiddleware(m.DispatchMiddleware()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.DispatchMany(ctx, []any{&Ship{}, &Ship{}, &Ship{}, &Ship{Fail: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DispatchMany(ctx, []any{&Ship{}, &Ship{}}, queue.OnQueue("later")); err != nil {
		t.Fatal(err)
	}
	reg := queue.NewRegistry()
	if err := queue.Register(reg, &Ship{}); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(a, reg, worker.Config{ID: "w1", Queues: []string{"shipping"}, MaxTasks: 4, PollInterval: 50 * time.Millisecond,
		Middleware: []queue.AttemptMiddleware{m.AttemptMiddleware()}})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchWorker(w)
	m.WatchQueues(a)
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	pr := prometheus.NewRegistry()
	pr.MustRegister(m)
	srv := httptest.NewServer(promhttp.HandlerFor(pr, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	kind := "tasqprom_test.Ship"
	if i := strings.Index(string(body), `tasq_jobs_started_total{kind="`); i >= 0 {
		rest := string(body)[i+len(`tasq_jobs_started_total{kind="`):]
		kind = rest[:strings.IndexByte(rest, '"')]
	}
	for _, want := range []string{
		`tasq_jobs_dispatched_total{kind="` + kind + `",queue="shipping"} 4`,
		`tasq_jobs_dispatched_total{kind="` + kind + `",queue="later"} 2`,
		`tasq_jobs_started_total{kind="` + kind + `",queue="shipping"} 4`,
		`tasq_jobs_finished_total{kind="` + kind + `",outcome="completed",queue="shipping"} 3`,
		`tasq_jobs_finished_total{kind="` + kind + `",outcome="failed",queue="shipping"} 1`,
		`tasq_job_run_seconds_count{kind="` + kind + `",queue="shipping"} 4`,
		`tasq_queue_jobs{queue="later",state="available"} 2`,
		`tasq_queue_jobs{queue="shipping",state="completed"} 3`, // a small table: counted exactly
		`tasq_queue_jobs{queue="shipping",state="failed"} 1`,
		`tasq_worker_events_total{what="claimed",worker="w1"} 4`,
		`tasq_worker_gauge{what="running",worker="w1"} 0`,
		`tasq_worker_gauge{what="pending_outcomes",worker="w1"} 0`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
