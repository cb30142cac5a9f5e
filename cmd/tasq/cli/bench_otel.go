package cli

import (
	"context"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqotel"
)

// discardSpans is a span exporter that drops what it gets: --otel measures
// making, propagating and batching spans, not a collector's network.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// benchOtel returns, when on, the client options and worker middleware that
// trace every dispatch and attempt (sampled, batched, then discarded), and a
// function that shuts the tracer provider down.
func benchOtel(on bool) ([]queue.ClientOption, []queue.AttemptMiddleware, func()) {
	if !on {
		return nil, nil, func() {}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discardSpans{}))
	opt := tasqotel.WithTracerProvider(tp)
	return []queue.ClientOption{queue.WithDispatchMiddleware(tasqotel.DispatchMiddleware(opt))},
		[]queue.AttemptMiddleware{tasqotel.AttemptMiddleware(opt)},
		func() { _ = tp.Shutdown(context.Background()) }
}
