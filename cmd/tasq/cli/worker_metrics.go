package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqprom"
	"github.com/tasqhq/tasq/worker"
)

// metricsServer serves a worker's Prometheus metrics at /metrics
// (--metrics-addr).
type metricsServer struct {
	m   *tasqprom.Metrics
	ln  net.Listener
	srv *http.Server
}

// listenMetrics listens on addr; the worker's config gets the metrics'
// attempt middleware and its Observer (claim and completion latency).
func listenMetrics(addr string, cfg *worker.Config) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	m := tasqprom.New()
	cfg.Middleware = append(cfg.Middleware, m.AttemptMiddleware())
	cfg.Observer = m
	return &metricsServer{m: m, ln: ln}, nil
}

// serve reports w's figures and, when ad can tell them, its queues' depths
// and lags, until stop is called.
func (s *metricsServer) serve(w *worker.Worker, ad queue.Adapter, log *slog.Logger) (stop func()) {
	s.m.WatchWorker(w)
	if sr, ok := ad.(queue.StatsReader); ok {
		s.m.WatchQueues(sr)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.m)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+s.ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
	}
}
