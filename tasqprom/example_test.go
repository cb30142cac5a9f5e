package tasqprom_test

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqprom"
	"github.com/tasqhq/tasq/worker"
)

// Count dispatches and attempts, time the worker's claims and outcome
// writes, and report queue depths and lags and the worker's figures at
// scrape time, on /metrics.
func Example() {
	ctx := context.Background()
	adapter, err := postgres.New(ctx, "postgres://localhost/app")
	if err != nil {
		return
	}
	defer adapter.Close()
	m := tasqprom.New()
	client, _ := queue.NewClient(adapter, queue.WithDispatchMiddleware(m.DispatchMiddleware()))
	w, err := worker.New(adapter, queue.NewRegistry(), worker.Config{
		Middleware: []queue.AttemptMiddleware{m.AttemptMiddleware()},
		Observer:   m, // claim and completion latency
	})
	if err != nil {
		return
	}
	m.WatchWorker(w)
	m.WatchQueues(adapter) // depths, and lags: the postgres adapter is a queue.LagReader
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	_ = client
}
