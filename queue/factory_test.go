package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/ormref"
	"github.com/tasqhq/tasq/queue"
)

// outbox is a fake mailer: the dependency injected into mailTask.
type outbox struct {
	mu   sync.Mutex
	name string
	sent []string
}

func (o *outbox) send(to, subject string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent = append(o.sent, to+": "+subject)
}

func (o *outbox) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.sent...)
}

var errBounced = errors.New("bounced")

// mailTask has every optional part: metadata, Kind, Config, ShouldRetry and
// Failed, a dependency in an unexported field and one in an exported field
// tagged json:"-".
type mailTask struct {
	queue.TaskBase
	To, Subject string
	Tags        []string
	Trace       string `json:"-"` // exported, but not payload: a dependency

	mailer *outbox
	failed *[]string
}

func (*mailTask) Kind() string { return "mail.v1" }

func (*mailTask) Config() queue.Config { return queue.Config{Queue: "mail", MaxRetries: 4} }

func (t *mailTask) Handle(ctx context.Context) (string, error) {
	if t.To == "" {
		return "", errBounced
	}
	t.mailer.send(t.To, t.Subject)
	return fmt.Sprintf("%s via %s (%s), attempt %d", t.To, t.mailer.name, t.Trace, t.Attempt()), nil
}

func (t *mailTask) ShouldRetry(err error) bool { return t.mailer != nil && !errors.Is(err, errBounced) }

func (t *mailTask) Failed(ctx context.Context, err error) {
	*t.failed = append(*t.failed, fmt.Sprintf("%s via %s: %v", t.To, t.mailer.name, err))
}

func prepare(t *testing.T, reg *queue.Registry, kind, payload string, meta queue.Metadata) *queue.Execution {
	t.Helper()
	x, err := reg.Prepare(kind, []byte(payload), meta)
	if err != nil {
		t.Fatalf("Prepare(%s, %s): %v", kind, payload, err)
	}
	return x
}

func TestRegisterFactoryInjectsDependenciesAndDecodesThePayload(t *testing.T) {
	box := &outbox{name: "smtp"}
	var failed []string
	reg := queue.NewRegistry()
	if err := queue.RegisterFactory(reg, func() *mailTask {
		return &mailTask{mailer: box, failed: &failed, Trace: "trace-1"}
	}); err != nil {
		t.Fatal(err)
	}
	if got := reg.Kinds(); len(got) != 1 || got[0] != "mail.v1" {
		t.Fatalf("kinds = %v, want [mail.v1] from Kind()", got)
	}
	if cfg, _ := reg.Config("mail.v1"); cfg.Queue != "mail" || cfg.MaxRetries != 4 {
		t.Errorf("config = %+v, want the task's Config()", cfg)
	}

	id := uuid.New()
	x := prepare(t, reg, "mail.v1", `{"To":"ada@example.com","Subject":"Hi","Tags":["a"]}`, queue.Metadata{ID: id, Attempt: 2})
	task := x.Task().(*mailTask)
	if task.To != "ada@example.com" || task.Subject != "Hi" || len(task.Tags) != 1 || task.ID() != id {
		t.Errorf("decoded task = %+v, want the payload and metadata", task)
	}
	res, err := x.Handle(context.Background())
	if err != nil || string(res) != `"ada@example.com via smtp (trace-1), attempt 2"` {
		t.Errorf("Handle = %s, %v", res, err)
	}
	if got := box.all(); len(got) != 1 || got[0] != "ada@example.com: Hi" {
		t.Errorf("mailer got %v", got)
	}

	// The hooks run on the built value too.
	x = prepare(t, reg, "mail.v1", `{"Subject":"nobody"}`, queue.Metadata{})
	_, err = x.Handle(context.Background())
	if !errors.Is(err, errBounced) || x.ShouldRetry(err) || !x.ShouldRetry(errors.New("timeout")) {
		t.Errorf("ShouldRetry on the built value: err %v", err)
	}
	x.Failed(context.Background(), err)
	if len(failed) != 1 || failed[0] != " via smtp: bounced" {
		t.Errorf("Failed saw %v", failed)
	}
}

func TestRegisterFactoryPayloadIsExactlyTheExportedFields(t *testing.T) {
	// A job's payload is what the dispatcher encodes: the dependency fields
	// of the value it dispatches do not travel.
	c, rec := newRecordingClient(t)
	_, err := c.Dispatch(context.Background(), &mailTask{To: "a@example.com", Trace: "dispatcher", mailer: &outbox{}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rec.last().Payload); got != `{"To":"a@example.com","Subject":"","Tags":null}` {
		t.Errorf("payload = %s, want the exported fields only", got)
	}
	// On the worker's side a field missing from the payload is zero, never
	// a value left by an earlier job or by the factory.
	shared := &mailTask{mailer: &outbox{name: "shared"}}
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *mailTask { return shared })
	first := prepare(t, reg, "mail.v1", `{"To":"a@example.com","Tags":["x"]}`, queue.Metadata{}).Task().(*mailTask)
	second := prepare(t, reg, "mail.v1", `{"Subject":"only a subject"}`, queue.Metadata{}).Task().(*mailTask)
	if second.To != "" || second.Tags != nil || second.Subject != "only a subject" {
		t.Errorf("second job = %+v: fields absent from its payload must be zero", second)
	}
	if first == shared || second == shared || first == second {
		t.Error("the factory's value was used as is: every execution needs its own")
	}
	if shared.To != "" || shared.Tags != nil {
		t.Errorf("decoding wrote into the factory's value: %+v", shared)
	}
	if first.mailer != shared.mailer || second.mailer != shared.mailer {
		t.Error("the dependency was not carried into the executions")
	}
}

// counter's Handle writes its own fields: the race detector sees any value
// two executions share.
type counter struct {
	N     int
	seen  []int
	calls *atomic.Int64
}

func (t *counter) Handle(ctx context.Context) (int, error) {
	for i := range 100 {
		t.seen = append(t.seen, t.N+i)
	}
	t.N = len(t.seen)
	t.calls.Add(1)
	return t.N, nil
}

func TestRegisterFactoryConcurrentExecutionsGetDistinctValues(t *testing.T) {
	for name, shareTemplate := range map[string]bool{"new value per call": false, "same pointer every call": true} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int64
			template := &counter{calls: &calls}
			reg := queue.NewRegistry()
			queue.MustRegisterFactory(reg, func() *counter {
				if shareTemplate {
					return template
				}
				return &counter{calls: &calls}
			})
			const n = 64
			tasks := make([]*counter, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					x, err := reg.Prepare("counter", fmt.Appendf(nil, `{"N":%d}`, i*1000), queue.Metadata{})
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := x.Handle(context.Background()); err != nil {
						t.Error(err)
					}
					tasks[i] = x.Task().(*counter)
				})
			}
			wg.Wait()
			seen := map[*counter]bool{}
			for i, task := range tasks {
				if task == nil {
					t.FailNow()
				}
				if seen[task] {
					t.Fatalf("two executions shared %p", task)
				}
				seen[task] = true
				if task.N != 100 || len(task.seen) != 100 || task.seen[0] != i*1000 {
					t.Errorf("execution %d: N %d, seen %d from %d; another execution wrote into it", i, task.N, len(task.seen), task.seen[0])
				}
			}
			if calls.Load() != n {
				t.Errorf("%d Handle calls counted, want %d", calls.Load(), n)
			}
		})
	}
}

// byValue is a value-receiver task built by a factory.
type byValue struct {
	Name   string
	prefix string
}

func (t byValue) Handle(context.Context) (string, error) { return t.prefix + t.Name, nil }

func TestRegisterFactoryWithAValueType(t *testing.T) {
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() byValue { return byValue{prefix: "hello, "} })
	res, err := prepare(t, reg, "byValue", `{"Name":"ada"}`, queue.Metadata{}).Handle(context.Background())
	if err != nil || string(res) != `"hello, ada"` {
		t.Errorf("Handle = %s, %v", res, err)
	}
}

// withOptions embeds payload fields: promoted fields and an embedded pointer.
type options struct{ Retries int }
type logger struct{ prefix string }
type embedded struct {
	options  // promoted payload field Retries
	*logger  // no exported fields: a dependency, shared by design
	*Extra   // exported fields: payload, allocated by encoding/json
	Name     string
	internal map[string]int
}

// Extra is embedded by pointer in embedded.
type Extra struct{ Note string }

func (t *embedded) Handle(context.Context) (string, error) {
	t.internal["runs"]++
	note := ""
	if t.Extra != nil {
		note = t.Note
	}
	return fmt.Sprintf("%s%s r=%d n=%s", t.prefix, t.Name, t.Retries, note), nil
}

func TestRegisterFactoryRefusesMisbehavingFactoriesAtRegistration(t *testing.T) {
	box := &outbox{}
	for _, tc := range []struct {
		name     string
		register func(reg *queue.Registry) error
		sentinel error
		says     string
	}{
		{"nil registry", func(*queue.Registry) error {
			return queue.RegisterFactory(nil, func() *mailTask { return &mailTask{} })
		}, queue.ErrInvalidConfig, "nil *Registry"},
		{"nil function", func(reg *queue.Registry) error {
			return queue.RegisterFactory[*mailTask](reg, nil)
		}, queue.ErrNotATask, "nil function"},
		{"returns nil", func(reg *queue.Registry) error {
			return queue.RegisterFactory(reg, func() *mailTask { return nil })
		}, queue.ErrFactory, "returned a nil *queue_test.mailTask"},
		{"panics", func(reg *queue.Registry) error {
			return queue.RegisterFactory(reg, func() *mailTask { panic("no mailer configured") })
		}, queue.ErrFactory, "panicked: no mailer configured"},
		{"sets a payload field", func(reg *queue.Registry) error {
			return queue.RegisterFactory(reg, func() *mailTask { return &mailTask{mailer: box, Subject: "default subject"} })
		}, queue.ErrFactory, "payload field Subject"},
		{"sets a promoted payload field", func(reg *queue.Registry) error {
			return queue.RegisterFactory(reg, func() *embedded { return &embedded{options: options{Retries: 3}} })
		}, queue.ErrFactory, "payload field options.Retries"},
		{"sets an embedded pointer with payload fields", func(reg *queue.Registry) error {
			return queue.RegisterFactory(reg, func() *embedded { return &embedded{Extra: &Extra{}} })
		}, queue.ErrFactory, "payload field Extra"},
		{"interface type", func(reg *queue.Registry) error {
			return queue.RegisterFactory(reg, func() queue.Task[string] { return &mailTask{} })
		}, queue.ErrNotATask, "struct type or a pointer to one"},
		{"non-struct type", func(reg *queue.Registry) error {
			return queue.RegisterFactory(reg, func() ping { return 1 })
		}, queue.ErrNotATask, "struct type or a pointer to one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := queue.NewRegistry()
			err := tc.register(reg)
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v; want %v saying %q", err, tc.sentinel, tc.says)
			}
			if len(reg.Kinds()) != 0 {
				t.Errorf("a refused factory was registered: %v", reg.Kinds())
			}
		})
	}
}

type ping int

func (ping) Handle(context.Context) (int, error) { return 0, nil }

func TestRegisterFactoryEmbeddedFields(t *testing.T) {
	log := &logger{prefix: "> "}
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *embedded { return &embedded{logger: log, internal: map[string]int{}} })
	x := prepare(t, reg, "embedded", `{"Name":"a","Retries":2,"Note":"n"}`, queue.Metadata{})
	res, err := x.Handle(context.Background())
	if err != nil || string(res) != `"\u003e a r=2 n=n"` {
		t.Errorf("Handle = %s, %v; want promoted and embedded payload fields decoded and the logger injected", res, err)
	}
	if task := x.Task().(*embedded); task.logger != log {
		t.Error("the embedded dependency was not kept")
	}
}

// flaky's factory misbehaves on demand, after a good registration.
type flaky struct{ To string }

func (*flaky) Handle(context.Context) (bool, error) { return true, nil }

func TestPrepareFailsOnlyTheJobWhoseFactoryMisbehaves(t *testing.T) {
	var mode atomic.Value
	mode.Store("ok")
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *flaky {
		switch mode.Load() {
		case "nil":
			return nil
		case "panic":
			panic("pool closed")
		case "payload":
			return &flaky{To: "leaked@example.com"}
		}
		return &flaky{}
	})
	for m, says := range map[string]string{
		"nil":     "flaky: the factory returned a nil *queue_test.flaky",
		"panic":   "flaky: the factory panicked: pool closed",
		"payload": "flaky: the factory set the payload field To",
	} {
		mode.Store(m)
		_, err := reg.Prepare("flaky", []byte(`{"To":"a@example.com"}`), queue.Metadata{})
		if !errors.Is(err, queue.ErrFactory) || errors.Is(err, queue.ErrDecode) || !strings.Contains(err.Error(), says) {
			t.Errorf("factory %s: Prepare err = %v; want ErrFactory saying %q", m, err, says)
		}
		if strings.Contains(fmt.Sprint(err), "leaked@example.com") {
			t.Errorf("the error repeats the field's value: %v", err)
		}
		mode.Store("ok")
		x, err := reg.Prepare("flaky", []byte(`{"To":"a@example.com"}`), queue.Metadata{})
		if err != nil || x.Task().(*flaky).To != "a@example.com" {
			t.Errorf("after a misbehaving call (%s) the next job fails too: %v", m, err)
		}
	}
}

func TestRegisterRefusesAPrototypeHoldingDependencies(t *testing.T) {
	reg := queue.NewRegistry()
	err := queue.Register(reg, &mailTask{mailer: &outbox{}})
	if !errors.Is(err, queue.ErrInvalidConfig) || !strings.Contains(err.Error(), "field mailer") || !strings.Contains(err.Error(), "queue.RegisterFactory") {
		t.Errorf("Register with a dependency in the prototype: %v; want ErrInvalidConfig pointing to RegisterFactory", err)
	}
	err = queue.Register(reg, &mailTask{Trace: "x"})
	if !errors.Is(err, queue.ErrInvalidConfig) || !strings.Contains(err.Error(), "field Trace") {
		t.Errorf("Register with a json:\"-\" field set: %v", err)
	}
	// As before: exported payload fields and TaskBase metadata of a prototype
	// are ignored, not refused, and a typed nil works.
	proto := &mailTask{To: "ignored"}
	queue.SetMetadata(proto, queue.Metadata{Attempt: 3})
	if err := queue.Register(reg, proto); err != nil {
		t.Errorf("Register(&mailTask{To: ...}) = %v", err)
	}
	if err := queue.Register(queue.NewRegistry(), (*mailTask)(nil)); err != nil {
		t.Errorf("Register((*mailTask)(nil)) = %v", err)
	}
}

// reader is a model loaded by ormref's Ref through a loader.
type reader struct{ ID int64 }

type lendBook struct {
	Reader ormref.Ref[reader, int64]
	Title  string
	shelf  *outbox
}

func (t *lendBook) Handle(context.Context) (string, error) {
	t.shelf.send(fmt.Sprint(t.Reader.Value().ID), t.Title)
	return "lent", nil
}

func TestRegisterFactoryWorksWithAResolver(t *testing.T) {
	codec := ormref.New(nil)
	ormref.RegisterLoader(codec, "readers", func(ctx context.Context, id int64) (*reader, error) { return &reader{ID: id}, nil })
	payload, err := codec.Encode(&lendBook{Reader: ormref.RefTo[reader](int64(7)), Title: "Dune"})
	if err != nil {
		t.Fatal(err)
	}
	shelf := &outbox{}
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *lendBook { return &lendBook{shelf: shelf} })
	x := prepare(t, reg, "lendBook", string(payload), queue.Metadata{})
	if err := codec.Resolve(context.Background(), x.Task(), x.Payload()); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if _, err := x.Handle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := shelf.all(); len(got) != 1 || got[0] != "7: Dune" {
		t.Errorf("Handle saw %v, want the resolved reader 7 and the injected shelf", got)
	}
}

func TestKindOf(t *testing.T) {
	for task, want := range map[any]string{&mailTask{}: "mail.v1", byValue{}: "byValue", &flaky{}: "flaky"} {
		if got, err := queue.KindOf(task); err != nil || got != want {
			t.Errorf("KindOf(%T) = %q, %v; want %q", task, got, err, want)
		}
	}
	if _, err := queue.KindOf(nil); !errors.Is(err, queue.ErrNotATask) {
		t.Errorf("KindOf(nil) = %v", err)
	}
}

// recordingAdapter keeps what a client inserts.
type recordingAdapter struct {
	queue.Adapter // nil: only Name and Insert are called
	mu            sync.Mutex
	jobs          []queue.NewJob
}

func (a *recordingAdapter) Name() string { return "recording" }

func (a *recordingAdapter) Insert(ctx context.Context, jobs []queue.NewJob) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.jobs = append(a.jobs, jobs...)
	return nil
}

func (a *recordingAdapter) last() queue.NewJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.jobs[len(a.jobs)-1]
}

func newRecordingClient(t *testing.T) (*queue.Client, *recordingAdapter) {
	a := &recordingAdapter{}
	c, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	return c, a
}
