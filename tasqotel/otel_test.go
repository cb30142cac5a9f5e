package tasqotel_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqotel"
	"github.com/tasqhq/tasq/worker"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// seen records the trace and span each Handle found in its context.
var seen sync.Map // job attempt -> trace.SpanContext

// Charge fails its first attempt and succeeds on the second.
type Charge struct {
	queue.TaskBase
	Amount int
}

func (*Charge) Config() queue.Config {
	return queue.Config{Queue: "billing", MaxRetries: 3, RetryDelay: queue.RetryImmediately}
}

func (c *Charge) Handle(ctx context.Context) (int, error) {
	seen.Store(c.Attempt(), trace.SpanContextFromContext(ctx))
	if c.Attempt() == 0 {
		return 0, errors.New("gateway timeout")
	}
	return c.Amount, nil
}

// spanLog is a slog.Handler that records, for each message, the span its
// context held: what a handler that adds trace ids to logs would see.
type spanLog struct {
	mu    sync.Mutex
	spans map[string]trace.SpanContext
}

func (h *spanLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *spanLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *spanLog) WithGroup(string) slog.Handler            { return h }
func (h *spanLog) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.spans[r.Message] = trace.SpanContextFromContext(ctx)
	return nil
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestTraceFromRequestThroughRetriesOnTwoWorkers: a dispatch inside a
// request's span yields a producer span in that trace; the first attempt
// (worker A) fails, the retry runs on worker B; both consumer spans are
// children of the producer span, Handle sees them in its context, and the
// attributes follow the messaging conventions.
func TestTraceFromRequestThroughRetriesOnTwoWorkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := postgres.New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	client, err := queue.NewClient(a, queue.WithDispatchMiddleware(tasqotel.DispatchMiddleware(tasqotel.WithTracerProvider(tp))))
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, req := tp.Tracer("web").Start(ctx, "POST /checkout")
	id, err := client.Dispatch(reqCtx, &Charge{Amount: 42})
	req.End()
	if err != nil {
		t.Fatal(err)
	}

	reg := queue.NewRegistry()
	if err := queue.Register(reg, &Charge{}); err != nil {
		t.Fatal(err)
	}
	logs := &spanLog{spans: map[string]trace.SpanContext{}}
	run := func(name string) {
		w, err := worker.New(a, reg, worker.Config{
			ID: name, Queues: []string{"billing"}, MaxTasks: 1, PollInterval: 50 * time.Millisecond, Logger: slog.New(logs),
			Middleware: []queue.AttemptMiddleware{tasqotel.AttemptMiddleware(tasqotel.WithTracerProvider(tp))},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(ctx); err != nil {
			t.Fatalf("worker %s: %v", name, err)
		}
	}
	run("worker-a") // returns after the first attempt is finished and written
	run("worker-b")
	if j, err := a.GetJob(ctx, id); err != nil || j.State != queue.StateCompleted {
		t.Fatalf("job = %+v, %v; want completed", j, err)
	}

	var send tracetest.SpanStub
	var process []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch s.SpanKind {
		case trace.SpanKindProducer:
			send = s
		case trace.SpanKindConsumer:
			process = append(process, s)
		}
	}
	if send.Name != "send billing" || send.Parent.SpanID() != req.SpanContext().SpanID() || send.SpanContext.TraceID() != req.SpanContext().TraceID() {
		t.Fatalf("producer span = %q parent %v, want \"send billing\" under the request span", send.Name, send.Parent.SpanID())
	}
	if got := attrs(send); got["messaging.system"].AsString() != "tasq" || got["messaging.destination.name"].AsString() != "billing" || got["messaging.message.id"].AsString() != id.String() {
		t.Errorf("producer attributes = %v", send.Attributes)
	}
	if len(process) != 2 {
		t.Fatalf("%d consumer spans, want 2 (one per attempt)", len(process))
	}
	for i, s := range process {
		got := attrs(s)
		wantOutcome := []string{"retryable", "completed"}[i]
		if s.Name != "process billing" || s.Parent.SpanID() != send.SpanContext.SpanID() || s.SpanContext.TraceID() != req.SpanContext().TraceID() {
			t.Errorf("attempt %d: span %q parent %v trace %v, want a child of the producer span", i+1, s.Name, s.Parent.SpanID(), s.SpanContext.TraceID())
		}
		if got["tasq.job.attempt"].AsInt64() != int64(i+1) || got["tasq.job.outcome"].AsString() != wantOutcome ||
			got["messaging.message.id"].AsString() != id.String() || got["messaging.operation.type"].AsString() != "process" ||
			got["tasq.job.kind"].AsString() == "" {
			t.Errorf("attempt %d attributes = %v", i+1, s.Attributes)
		}
		if i == 0 {
			// The worker logs the failed attempt with the attempt's context.
			logs.mu.Lock()
			sc, ok := logs.spans["attempt failed; will retry"]
			logs.mu.Unlock()
			if !ok || sc.SpanID() != s.SpanContext.SpanID() {
				t.Errorf("the retry log line's context held span %v (logged: %v), want attempt 1's span %v", sc.SpanID(), ok, s.SpanContext.SpanID())
			}
		}
		v, ok := seen.Load(i)
		if !ok || v.(trace.SpanContext).SpanID() != s.SpanContext.SpanID() {
			t.Errorf("attempt %d: Handle's context held span %v, want the attempt's span %v", i+1, v, s.SpanContext.SpanID())
		}
	}
}
