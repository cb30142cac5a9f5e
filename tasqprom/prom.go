// Package tasqprom exports TasQ metrics to Prometheus (client_golang): job
// counters and run durations from middleware; claim and completion latency
// from the worker's Observer; and, at scrape time, each queue's depth per
// state and lag (the age of its oldest available job) and a worker's own
// figures (claimed, running, completer backlog, stuck executions, lost
// leases, lease rescues, leadership).
//
//	m := tasqprom.New()
//	client, _ := queue.NewClient(adapter, queue.WithDispatchMiddleware(m.DispatchMiddleware()))
//	w, _ := worker.New(adapter, reg, worker.Config{Middleware: []queue.AttemptMiddleware{m.AttemptMiddleware()}, Observer: m})
//	m.WatchWorker(w)
//	m.WatchQueues(adapter) // a queue.StatsReader; its lag too when it is a queue.LagReader
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(m)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
package tasqprom

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Metrics is a prometheus.Collector of TasQ's metrics. Register it with a
// prometheus.Registerer. It is safe for concurrent use.
type Metrics struct {
	dispatched *prometheus.CounterVec
	started    *prometheus.CounterVec
	finished   *prometheus.CounterVec
	duration   *prometheus.HistogramVec

	claimTime   *prometheus.HistogramVec
	claimErrors *prometheus.CounterVec
	finishTime  prometheus.Histogram
	finishBatch prometheus.Histogram
	finishErrs  prometheus.Counter

	depth, lag, workerGauge *prometheus.Desc
	workerCount             *prometheus.Desc

	mu      sync.Mutex
	workers []*worker.Worker
	stats   []queue.StatsReader
}

// New makes the metrics, named tasq_*.
func New() *Metrics {
	return &Metrics{
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tasq_jobs_dispatched_total", Help: "Jobs dispatched (stored), by queue and kind."}, []string{"queue", "kind"}),
		started:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tasq_jobs_started_total", Help: "Attempts started, by queue and kind."}, []string{"queue", "kind"}),
		finished:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tasq_jobs_finished_total", Help: "Attempts finished, by queue, kind and decided outcome (completed, retryable, failed, cancelled, available/scheduled for a snooze or hand-back, dropped)."}, []string{"queue", "kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tasq_job_run_seconds", Help: "Run time of attempts, by queue and kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"queue", "kind"}),
		claimTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tasq_claim_seconds", Help: "Duration of the worker's claim calls (one statement claiming up to its free slots), by queue; failed calls included.",
			Buckets: latencyBuckets}, []string{"queue"}),
		claimErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tasq_claim_errors_total", Help: "Claim calls that failed, by queue."}, []string{"queue"}),
		finishTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tasq_finish_seconds", Help: "Duration of the worker's outcome writes (one batch per call); failed calls included.",
			Buckets: latencyBuckets}),
		finishBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tasq_finish_batch_size", Help: "Outcomes written per call.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 6)}),
		finishErrs:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tasq_finish_errors_total", Help: "Outcome writes that failed (and are retried)."}),
		depth:       prometheus.NewDesc("tasq_queue_jobs", "Jobs in a queue per state, read from the backend at scrape time.", []string{"queue", "state"}, nil),
		lag:         prometheus.NewDesc("tasq_queue_lag_seconds", "How long the oldest available job of a queue has waited to be claimed (0 when none waits), read from the backend at scrape time.", []string{"queue"}, nil),
		workerGauge: prometheus.NewDesc("tasq_worker_gauge", "A worker's current figures: running, pending_outcomes (completer backlog), stuck, leader (1 or 0).", []string{"worker", "what"}, nil),
		workerCount: prometheus.NewDesc("tasq_worker_events_total", "A worker's counts since it started: claimed, stale, dropped, lost_leases, handed_back, snoozed, maintenance_runs, purged, rescued (expired leases its maintenance handed back), promoted.", []string{"worker", "what"}, nil),
	}
}

// latencyBuckets are the buckets of claim and completion latency: 0.5 ms to
// about 8 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 15)

var _ worker.Observer = (*Metrics)(nil)

// ClaimDone implements worker.Observer: it records a claim's duration.
// Set the Metrics as worker.Config.Observer.
func (m *Metrics) ClaimDone(q string, _ int, d time.Duration, err error) {
	m.claimTime.WithLabelValues(q).Observe(d.Seconds())
	if err != nil {
		m.claimErrors.WithLabelValues(q).Inc()
	}
}

// FinishDone implements worker.Observer: it records the duration and size
// of a batch of outcomes written.
func (m *Metrics) FinishDone(n int, d time.Duration, err error) {
	m.finishTime.Observe(d.Seconds())
	m.finishBatch.Observe(float64(n))
	if err != nil {
		m.finishErrs.Inc()
	}
}

// WatchWorker adds w's Stats to what a scrape reports.
func (m *Metrics) WatchWorker(w *worker.Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workers = append(m.workers, w)
}

// WatchQueues adds the queue depths of a backend (a queue.StatsReader) to
// what a scrape reports, and, when the backend is also a queue.LagReader
// (postgres is), each queue's lag: a queue the depths show with no
// available job reports a lag of 0, so its series does not vanish.
func (m *Metrics) WatchQueues(s queue.StatsReader) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats = append(m.stats, s)
}

// DispatchMiddleware counts stored jobs.
func (m *Metrics) DispatchMiddleware() queue.DispatchMiddleware {
	return func(ctx context.Context, jobs []*queue.NewJob, next func(context.Context) error) error {
		if err := next(ctx); err != nil {
			return err
		}
		for _, j := range jobs {
			m.dispatched.WithLabelValues(j.Queue, j.Kind).Inc()
		}
		return nil
	}
}

// AttemptMiddleware counts started and finished attempts and their run time.
func (m *Metrics) AttemptMiddleware() queue.AttemptMiddleware {
	return func(ctx context.Context, a *queue.Attempt, next func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
		q, k := a.Job.Queue, a.Job.Kind
		m.started.WithLabelValues(q, k).Inc()
		start := time.Now()
		a.AfterOutcome(func(o queue.AttemptOutcome) {
			outcome := string(o.Outcome.State)
			if o.Dropped {
				outcome = "dropped"
			}
			m.finished.WithLabelValues(q, k, outcome).Inc()
		})
		res, err := next(ctx)
		m.duration.WithLabelValues(q, k).Observe(time.Since(start).Seconds())
		return res, err
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.dispatched.Describe(ch)
	m.started.Describe(ch)
	m.finished.Describe(ch)
	m.duration.Describe(ch)
	m.claimTime.Describe(ch)
	m.claimErrors.Describe(ch)
	m.finishTime.Describe(ch)
	m.finishBatch.Describe(ch)
	m.finishErrs.Describe(ch)
	ch <- m.depth
	ch <- m.lag
	ch <- m.workerGauge
	ch <- m.workerCount
}

// Collect implements prometheus.Collector. It reads queue depths and lags
// from the backends (bounded by 5 seconds) and the workers' Stats.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.dispatched.Collect(ch)
	m.started.Collect(ch)
	m.finished.Collect(ch)
	m.duration.Collect(ch)
	m.claimTime.Collect(ch)
	m.claimErrors.Collect(ch)
	m.finishTime.Collect(ch)
	m.finishBatch.Collect(ch)
	m.finishErrs.Collect(ch)
	m.mu.Lock()
	workers, readers := append([]*worker.Worker(nil), m.workers...), append([]queue.StatsReader(nil), m.stats...)
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, r := range readers {
		st, err := r.Stats(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(m.depth, err)
			continue
		}
		for _, s := range st {
			ch <- prometheus.MustNewConstMetric(m.depth, prometheus.GaugeValue, float64(s.Count), s.Queue, string(s.State))
		}
		if lr, ok := r.(queue.LagReader); ok {
			m.collectLag(ctx, ch, lr, st)
		}
	}
	for _, w := range workers {
		s, id := w.Stats(), w.ID()
		leader := 0.0
		if s.Leader {
			leader = 1
		}
		for what, v := range map[string]float64{"running": float64(s.Running), "pending_outcomes": float64(s.Pending), "stuck": float64(s.Stuck), "leader": leader} {
			ch <- prometheus.MustNewConstMetric(m.workerGauge, prometheus.GaugeValue, v, id, what)
		}
		for what, v := range map[string]int64{"claimed": s.Claimed, "stale": s.Stale, "dropped": s.Dropped, "lost_leases": s.LostLeases,
			"handed_back": s.HandedBack, "snoozed": s.Snoozed, "maintenance_runs": s.MaintenanceRuns, "purged": s.Purged,
			"rescued": s.Rescued, "promoted": s.Promoted} {
			ch <- prometheus.MustNewConstMetric(m.workerCount, prometheus.CounterValue, float64(v), id, what)
		}
	}
}

// collectLag reports each queue's lag; queues in st without an available job
// report 0.
func (m *Metrics) collectLag(ctx context.Context, ch chan<- prometheus.Metric, lr queue.LagReader, st []queue.QueueStat) {
	lags, err := lr.Lag(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.lag, err)
		return
	}
	seen := make(map[string]bool, len(lags))
	for _, l := range lags {
		seen[l.Queue] = true
		ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, l.Lag.Seconds(), l.Queue)
	}
	for _, s := range st {
		if !seen[s.Queue] {
			seen[s.Queue] = true
			ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, 0, s.Queue)
		}
	}
}
