package tasqotel_test

import (
	"context"

	"go.opentelemetry.io/otel"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqotel"
	"github.com/tasqhq/tasq/worker"
)

// Trace dispatches and attempts with the global tracer provider: a job
// dispatched inside a request's span continues that trace in every attempt's
// Handle, on whichever worker runs it.
func Example() {
	ctx := context.Background()
	adapter, err := postgres.New(ctx, "postgres://localhost/app")
	if err != nil {
		return
	}
	defer adapter.Close()
	tp := otel.GetTracerProvider() // an sdktrace.TracerProvider with your exporter
	client, _ := queue.NewClient(adapter, queue.WithDispatchMiddleware(tasqotel.DispatchMiddleware(tasqotel.WithTracerProvider(tp))))
	w, _ := worker.New(adapter, queue.NewRegistry(), worker.Config{
		Middleware: []queue.AttemptMiddleware{tasqotel.AttemptMiddleware(tasqotel.WithTracerProvider(tp))},
	})
	_, _ = client, w
}
