package tasqprom_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
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
// another queue; /metrics says exactly that, with the claims and outcome
// writes the worker timed and the waiting queue's lag.
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
		Middleware: []queue.AttemptMiddleware{m.AttemptMiddleware()}, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchWorker(w)
	m.WatchQueues(a)
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	body := []byte(scrape(t, m))
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
		`tasq_worker_events_total{what="rescued",worker="w1"} 0`,
		`tasq_queue_lag_seconds{queue="shipping"} 0`, // nothing waits there
		`tasq_finish_batch_size_sum 4`,               // every outcome written once
		`tasq_finish_errors_total 0`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The two jobs on "later" wait: its lag is their age, more than 0 and
	// less than the test has run.
	if v, ok := value(string(body), `tasq_queue_lag_seconds{queue="later"}`); !ok || v <= 0 || v > 60 {
		t.Errorf("tasq_queue_lag_seconds{queue=\"later\"} = %v (present %v), want in (0, 60]", v, ok)
	}
	// At least one claim found the four jobs; the poll after them found none.
	if v, _ := value(string(body), `tasq_claim_seconds_count{queue="shipping"}`); v < 1 {
		t.Errorf("tasq_claim_seconds_count{queue=\"shipping\"} = %v, want at least 1", v)
	}
	if v, _ := value(string(body), `tasq_claim_seconds_sum{queue="shipping"}`); v <= 0 {
		t.Errorf("tasq_claim_seconds_sum{queue=\"shipping\"} = %v, want > 0", v)
	}
	if v, _ := value(string(body), `tasq_finish_seconds_count`); v < 1 || v > 4 {
		t.Errorf("tasq_finish_seconds_count = %v, want 1 to 4 batches for 4 outcomes", v)
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// scrape serves m on a test server and returns one /metrics page.
func scrape(t *testing.T, m *tasqprom.Metrics) string {
	t.Helper()
	pr := prometheus.NewRegistry()
	pr.MustRegister(m)
	srv := httptest.NewServer(promhttp.HandlerFor(pr, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s\n%s", resp.Status, body)
	}
	return string(body)
}

// value returns the value of the series named exactly series (name and
// labels as exposed) in a /metrics page.
func value(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestLeaseRescueIsCounted: a job claimed by a worker that then vanished
// (its lease in the past) is rescued by another worker's maintenance, which
// counts it, and then runs it.
func TestLeaseRescueIsCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := postgres.New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	client, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Dispatch(ctx, &Parcel{}); err != nil {
		t.Fatal(err)
	}
	reg := queue.NewRegistry()
	if err := queue.Register(reg, &Parcel{}); err != nil {
		t.Fatal(err)
	}
	// A worker that claims the job and dies: its lease runs out at once.
	claimed, err := a.Claim(ctx, queue.ClaimRequest{Queue: "shipping", WorkerID: "ghost", Limit: 1, Lease: time.Minute, Kinds: reg.Kinds()})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v jobs, %v", len(claimed), err)
	}
	if _, err := a.Pool().Exec(ctx, `UPDATE tasq_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1 AND state = 'running'`, claimed[0].ID); err != nil {
		t.Fatal(err)
	}
	m := tasqprom.New()
	w, err := worker.New(a, reg, worker.Config{ID: "w2", Queues: []string{"shipping"}, PollInterval: 50 * time.Millisecond,
		MaintenanceInterval: 50 * time.Millisecond, Observer: m, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchWorker(w)
	m.WatchQueues(a)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; {
		body = scrape(t, m)
		if strings.Contains(body, `tasq_queue_jobs{queue="shipping",state="completed"} 1`+"\n") &&
			strings.Contains(body, `tasq_worker_events_total{what="rescued",worker="w2"} 1`+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not rescued and completed within 20s; /metrics:\n%s", claimed[0].ID, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := w.Stats(); s.Rescued != 1 || s.Claimed != 1 {
		t.Errorf("stats %+v: want 1 rescued, 1 claimed", s)
	}
}

// Parcel succeeds; the attempt a rescue used leaves it retries.
type Parcel struct{ queue.TaskBase }

func (*Parcel) Config() queue.Config { return queue.Config{Queue: "shipping", MaxRetries: 3} }

func (*Parcel) Handle(context.Context) (string, error) { return "sent", nil }

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
