// Package tasqprom exports TasQ metrics to Prometheus (client_golang): job
// counters and run durations from middleware, and, at scrape time, each
// queue's depth per state and a worker's own figures (claimed, running,
// completer backlog, stuck executions, lost leases, leadership).
//
//	m := tasqprom.New()
//	client, _ := queue.NewClient(adapter, queue.WithDispatchMiddleware(m.DispatchMiddleware()))
//	w, _ := worker.New(adapter, reg, worker.Config{Middleware: []queue.AttemptMiddleware{m.AttemptMiddleware()}})
//	m.WatchWorker(w)
//	m.WatchQueues(adapter) // a queue.StatsReader
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

	depth, workerGauge *prometheus.Desc
	workerCount        *prometheus.Desc

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
		depth:       prometheus.NewDesc("tasq_queue_jobs", "Jobs in a queue per state, read from the backend at scrape time.", []string{"queue", "state"}, nil),
		workerGauge: prometheus.NewDesc("tasq_worker_gauge", "A worker's current figures: running, pending_outcomes (completer backlog), stuck, leader (1 or 0).", []string{"worker", "what"}, nil),
		workerCount: prometheus.NewDesc("tasq_worker_events_total", "A worker's counts since it started: claimed, stale, dropped, lost_leases, handed_back, snoozed, maintenance_runs, purged.", []string{"worker", "what"}, nil),
	}
}

// WatchWorker adds w's Stats to what a scrape reports.
func (m *Metrics) WatchWorker(w *worker.Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workers = append(m.workers, w)
}

// WatchQueues adds the queue depths of a backend (a queue.StatsReader) to
// what a scrape reports.
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
	ch <- m.depth
	ch <- m.workerGauge
	ch <- m.workerCount
}

// Collect implements prometheus.Collector. It reads queue depths from the
// backends (bounded by 5 seconds) and the workers' Stats.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.dispatched.Collect(ch)
	m.started.Collect(ch)
	m.finished.Collect(ch)
	m.duration.Collect(ch)
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
			"handed_back": s.HandedBack, "snoozed": s.Snoozed, "maintenance_runs": s.MaintenanceRuns, "purged": s.Purged} {
			ch <- prometheus.MustNewConstMetric(m.workerCount, prometheus.CounterValue, float64(v), id, what)
		}
	}
}
