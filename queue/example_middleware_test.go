package queue_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// Dispatch middleware stamps every job with the request id found in the
// dispatcher's context; attempt middleware reads it back on the worker and
// logs each attempt with its outcome and run time. Register the second on a
// worker: worker.Config{Middleware: []queue.AttemptMiddleware{logAttempts}}.
func ExampleWithDispatchMiddleware() {
	type requestIDKey struct{}
	stampRequest := func(ctx context.Context, jobs []*queue.NewJob, next func(context.Context) error) error {
		if id, ok := ctx.Value(requestIDKey{}).(string); ok {
			for _, j := range jobs {
				j.SetHeader("request-id", id)
			}
		}
		return next(ctx)
	}
	logAttempts := func(ctx context.Context, a *queue.Attempt, next func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
		start := time.Now()
		a.AfterOutcome(func(o queue.AttemptOutcome) {
			slog.InfoContext(ctx, "attempt", "job_id", a.Job.ID, "kind", a.Job.Kind, "attempt", a.Job.Attempt,
				"request_id", a.Headers["request-id"], "outcome", o.Outcome.State, "took", time.Since(start))
		})
		return next(ctx)
	}
	var adapter queue.Adapter // postgres.New(ctx, dsn) in an app
	client, err := queue.NewClient(adapter, queue.WithDispatchMiddleware(stampRequest))
	_, _, _ = client, err, queue.AttemptMiddleware(logAttempts)
}
