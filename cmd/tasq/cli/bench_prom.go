package cli

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqprom"
	"github.com/tasqhq/tasq/worker"
)

// benchPromScrape is how often --prom gathers the metrics, as a Prometheus
// server would scrape them (its default is every 15 s: this is harsher).
const benchPromScrape = time.Second

// benchProm is --prom: the Prometheus metrics of tasqprom on every dispatch,
// attempt, claim and outcome write, gathered every benchPromScrape with the
// queue depths and lags read from the database, as `tasq worker
// --metrics-addr` serves them.
type benchProm struct {
	m    *tasqprom.Metrics
	stop context.CancelFunc
	done chan struct{}
}

// newBenchProm returns nil when off. Otherwise it starts gathering from
// queues (the bench's adapter) until close.
func newBenchProm(on bool, queues queue.StatsReader) *benchProm {
	if !on {
		return nil
	}
	p := &benchProm{m: tasqprom.New(), done: make(chan struct{})}
	p.m.WatchQueues(queues)
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.m)
	var ctx context.Context
	ctx, p.stop = context.WithCancel(context.Background())
	go func() {
		defer close(p.done)
		t := time.NewTicker(benchPromScrape)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, _ = reg.Gather()
			}
		}
	}()
	return p
}

// clientOptions are the dispatch middleware's options for the bench client.
func (p *benchProm) clientOptions() []queue.ClientOption {
	if p == nil {
		return nil
	}
	return []queue.ClientOption{queue.WithDispatchMiddleware(p.m.DispatchMiddleware())}
}

// configure adds the attempt middleware and the Observer to a worker's
// config.
func (p *benchProm) configure(cfg *worker.Config) {
	if p == nil {
		return
	}
	cfg.Middleware = append(cfg.Middleware, p.m.AttemptMiddleware())
	cfg.Observer = p.m
}

// watch adds a worker's Stats to what is gathered.
func (p *benchProm) watch(w *worker.Worker) {
	if p != nil {
		p.m.WatchWorker(w)
	}
}

func (p *benchProm) close() {
	if p != nil {
		p.stop()
		<-p.done
	}
}
