// Package tasqotel traces TasQ jobs with OpenTelemetry: a producer span for
// each dispatch and a consumer span for each attempt, with the W3C trace
// context carried inside the job, so that the trace of a web request goes on
// through the dispatch into every attempt's Handle, on whichever worker runs
// it, retries included.
//
// It is built on TasQ's middleware, as a user would build their own:
//
//	client, _ := queue.NewClient(adapter, queue.WithDispatchMiddleware(tasqotel.DispatchMiddleware()))
//	w, _ := worker.New(adapter, reg, worker.Config{Middleware: []queue.AttemptMiddleware{tasqotel.AttemptMiddleware()}})
//
// The trace context travels in the job's headers (queue.NewJob.SetHeader),
// which the client stores in the job's metadata on backends that keep
// metadata (postgres). Other backends (redis, mysql, sqs) drop headers rather
// than refuse the job: there, dispatch and attempts are still traced, but
// each attempt starts its own trace.
//
// Span attributes follow OpenTelemetry's messaging semantic conventions
// where they fit: messaging.system is "tasq", messaging.destination.name
// the queue, messaging.message.id the job id, messaging.operation.type
// "send" or "process". TasQ's own attributes are tasq.job.kind,
// tasq.job.attempt and tasq.job.outcome (the decided state).
package tasqotel

import (
	"context"
	"encoding/json"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasqhq/tasq/queue"
)

// ScopeName is the instrumentation scope of the tracer tasqotel uses.
const ScopeName = "github.com/tasqhq/tasq/tasqotel"

// Attribute keys tasqotel sets besides the messaging conventions' ones.
const (
	AttrKind    = attribute.Key("tasq.job.kind")
	AttrAttempt = attribute.Key("tasq.job.attempt")
	AttrOutcome = attribute.Key("tasq.job.outcome")
)

// Messaging semantic-convention keys.
const (
	attrSystem    = attribute.Key("messaging.system")
	attrDest      = attribute.Key("messaging.destination.name")
	attrMessageID = attribute.Key("messaging.message.id")
	attrOpType    = attribute.Key("messaging.operation.type")
	attrOpName    = attribute.Key("messaging.operation.name")
	attrBatch     = attribute.Key("messaging.batch.message_count")
)

// Option configures the middleware.
type Option func(*config)

type config struct {
	tp   trace.TracerProvider
	prop propagation.TextMapPropagator
}

// WithTracerProvider makes the middleware use tp. Default: the global
// provider (otel.GetTracerProvider) at the time the middleware is made.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithPropagator makes the middleware carry the context with p. Default:
// W3C Trace Context (traceparent, tracestate).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

func newConfig(opts []Option) (trace.Tracer, propagation.TextMapPropagator) {
	c := config{prop: propagation.TraceContext{}}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	return c.tp.Tracer(ScopeName), c.prop
}

// headerCarrier writes a propagator's fields into a job's headers.
type headerCarrier struct{ j *queue.NewJob }

func (h headerCarrier) Get(key string) string { return h.j.Headers[key] }
func (h headerCarrier) Set(key, value string) { h.j.SetHeader(key, value) }
func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h.j.Headers))
	for k := range h.j.Headers {
		keys = append(keys, k)
	}
	return keys
}

// DispatchMiddleware returns dispatch middleware that opens a producer span
// "send <queue>" around each dispatch call (one span for a batch) and
// injects its context into every job's headers.
func DispatchMiddleware(opts ...Option) queue.DispatchMiddleware {
	tracer, prop := newConfig(opts)
	return func(ctx context.Context, jobs []*queue.NewJob, next func(context.Context) error) error {
		q := jobs[0].Queue
		attrs := []attribute.KeyValue{
			attrSystem.String("tasq"), attrDest.String(q),
			attrOpType.String("send"), attrOpName.String("send"),
			AttrKind.String(jobs[0].Kind),
		}
		if len(jobs) == 1 {
			attrs = append(attrs, attrMessageID.String(jobs[0].ID.String()))
		} else {
			attrs = append(attrs, attrBatch.Int(len(jobs)))
		}
		ctx, span := tracer.Start(ctx, "send "+q, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		defer span.End()
		for _, j := range jobs {
			prop.Inject(ctx, headerCarrier{j})
		}
		err := next(ctx)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	}
}

// AttemptMiddleware returns attempt middleware that opens a consumer span
// "process <queue>" for each attempt, a child of the dispatch's span when
// the job carries its trace context, and hands Handle a context holding it.
// The span ends when the worker has decided the attempt's outcome, which it
// records (tasq.job.outcome; an error status when it failed, will retry or was
// dropped).
func AttemptMiddleware(opts ...Option) queue.AttemptMiddleware {
	tracer, prop := newConfig(opts)
	return func(ctx context.Context, a *queue.Attempt, next func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
		j := a.Job
		if len(a.Headers) > 0 {
			ctx = prop.Extract(ctx, propagation.MapCarrier(a.Headers))
		}
		ctx, span := tracer.Start(ctx, "process "+j.Queue, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attrSystem.String("tasq"), attrDest.String(j.Queue), attrMessageID.String(j.ID.String()),
			attrOpType.String("process"), attrOpName.String("process"),
			AttrKind.String(j.Kind), AttrAttempt.Int(j.Attempt),
		))
		a.AfterOutcome(func(o queue.AttemptOutcome) {
			state := string(o.Outcome.State)
			if o.Dropped {
				state = "dropped"
			}
			span.SetAttributes(AttrOutcome.String(state))
			if o.Err != nil {
				span.RecordError(o.Err)
			}
			if o.Dropped || o.Outcome.State == queue.StateFailed || o.Outcome.State == queue.StateRetryable {
				span.SetStatus(codes.Error, fmt.Sprintf("attempt ended %s", state))
			}
			span.End()
		})
		return next(ctx)
	}
}
