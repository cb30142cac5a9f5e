package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// Registry maps job kinds to the task types that run them. A worker needs one
// holding every kind it may claim; dispatching needs none. A Registry is safe
// for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	entries map[string]*entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{entries: map[string]*entry{}} }

type entry struct {
	kind   string
	goType string
	cfg    Resolved
	// decode builds a fresh task value from a payload.
	decode func(payload []byte) (any, error)
	// run calls Handle (or the function) on a decoded value.
	run func(ctx context.Context, task any) (any, error)
}

// Register adds the task type of proto to reg. proto is a value of the type
// (usually a pointer to a zero struct, &SendEmail{}); its fields are ignored.
// The kind is proto's Kind() or its type name. Registering a kind twice, or a
// type whose Config is invalid, returns an error.
//
//	queue.Register(reg, &SendEmail{})
func Register[R any](reg *Registry, proto Task[R]) error {
	if reg == nil {
		return fmt.Errorf("%w: Register called with a nil *Registry; create one with queue.NewRegistry", ErrInvalidConfig)
	}
	if isNil(proto) && reflect.TypeOf(proto) == nil {
		return fmt.Errorf("%w: Register called with a nil task", ErrNotATask)
	}
	t := reflect.TypeOf(proto)
	isPtr := t.Kind() == reflect.Pointer
	elem := t
	if isPtr {
		elem = t.Elem()
	}
	kind, err := kindOf(proto)
	if err != nil {
		return err
	}
	cfg, err := configOf(proto).Resolve()
	if err != nil {
		return fmt.Errorf("register %s: %w", kind, err)
	}
	e := &entry{
		kind:   kind,
		goType: t.String(),
		cfg:    cfg,
		decode: func(payload []byte) (any, error) {
			v := reflect.New(elem)
			if err := json.Unmarshal(payload, v.Interface()); err != nil {
				return nil, err
			}
			if isPtr {
				return v.Interface(), nil
			}
			return v.Elem().Interface(), nil
		},
		run: func(ctx context.Context, task any) (any, error) {
			return task.(Task[R]).Handle(ctx)
		},
	}
	return reg.add(e)
}

// MustRegister is Register that panics on error, for package-level setup.
func MustRegister[R any](reg *Registry, proto Task[R]) {
	if err := Register(reg, proto); err != nil {
		panic(err)
	}
}

func (reg *Registry) add(e *entry) error {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if old, ok := reg.entries[e.kind]; ok {
		if old.goType == e.goType {
			return fmt.Errorf("%w: %s (type %s) is registered already; register each task type once", ErrDuplicateKind, e.kind, e.goType)
		}
		return fmt.Errorf("%w: kind %q is taken by %s, so %s cannot use it; give one of them a Kind() string method", ErrDuplicateKind, e.kind, old.goType, e.goType)
	}
	reg.entries[e.kind] = e
	return nil
}

// Kinds returns the registered kinds, sorted.
func (reg *Registry) Kinds() []string {
	reg.mu.RLock()
	defer reg.mu.RUnlock()
	out := make([]string, 0, len(reg.entries))
	for k := range reg.entries {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Config returns the resolved configuration registered for kind.
func (reg *Registry) Config(kind string) (Resolved, bool) {
	reg.mu.RLock()
	e, ok := reg.entries[kind]
	reg.mu.RUnlock()
	if !ok {
		return Resolved{}, false
	}
	return e.cfg, true
}

// Prepare decodes a job's payload into a fresh task value of its kind and sets
// its metadata. It fails with ErrUnknownKind or ErrDecode; a worker moves such
// a job to failed with the error as the reason.
func (reg *Registry) Prepare(kind string, payload []byte, meta Metadata) (*Execution, error) {
	reg.mu.RLock()
	e, ok := reg.entries[kind]
	reg.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q is not registered with this worker (register it with queue.Register)", ErrUnknownKind, kind)
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	task, err := e.decode(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: kind %s: %v", ErrDecode, kind, err)
	}
	SetMetadata(task, meta)
	return &Execution{Meta: meta, Config: e.cfg, task: task, e: e, payload: payload}, nil
}

// Execution is one decoded job, ready to run. Workers obtain it from
// Registry.Prepare.
type Execution struct {
	// Meta is the metadata given to the task.
	Meta Metadata
	// Config is the task type's registered configuration.
	Config  Resolved
	task    any
	e       *entry
	payload []byte
}

// Task returns the decoded task value.
func (x *Execution) Task() any { return x.task }

// Handle runs the task's Handle with its metadata in ctx and returns the
// result encoded as JSON.
func (x *Execution) Handle(ctx context.Context) (json.RawMessage, error) {
	ctx = ContextWithMetadata(ctx, x.Meta)
	res, err := x.e.run(ctx, x.task)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("tasq: %s returned a result that cannot be encoded as JSON: %w", x.e.kind, err)
	}
	return b, nil
}

// ShouldRetry asks the task's RetryDecider, if any, whether err is worth
// another attempt. Without one every error is, except a Permanent one.
func (x *Execution) ShouldRetry(err error) bool {
	if d, ok := x.task.(RetryDecider); ok {
		return d.ShouldRetry(err)
	}
	return !IsPermanent(err)
}

// Payload returns the job's payload as stored.
func (x *Execution) Payload() []byte { return x.payload }

// Failed runs the task's FailedHook, if any. It reports whether there was one.
func (x *Execution) Failed(ctx context.Context, err error) bool {
	h, ok := x.task.(FailedHook)
	if ok {
		h.Failed(ContextWithMetadata(ctx, x.Meta), err)
	}
	return ok
}

// Func is a task written as a plain function of its arguments, registered
// under a name: the guide's function-based tasks. Dispatch it with With:
//
//	resize := queue.NewFunc("resize_image", queue.Config{Queue: "images"},
//		func(ctx context.Context, a ResizeArgs) (string, error) { ... })
//	queue.RegisterFunc(reg, resize)
//	id, err := client.Dispatch(ctx, resize.With(ResizeArgs{Path: "a.png"}))
type Func[A, R any] struct {
	name string
	cfg  Config
	fn   func(context.Context, A) (R, error)
}

// NewFunc wraps fn as a task of kind name with configuration cfg.
func NewFunc[A, R any](name string, cfg Config, fn func(ctx context.Context, args A) (R, error)) *Func[A, R] {
	return &Func[A, R]{name: name, cfg: cfg, fn: fn}
}

// Name returns the function task's kind.
func (f *Func[A, R]) Name() string { return f.name }

// With returns a dispatchable call of f with args.
func (f *Func[A, R]) With(args A) *FuncCall {
	return &FuncCall{kind: f.name, cfg: f.cfg, args: args}
}

// RegisterFunc adds a function task to reg.
func RegisterFunc[A, R any](reg *Registry, f *Func[A, R]) error {
	if reg == nil || f == nil || f.fn == nil {
		return fmt.Errorf("%w: RegisterFunc needs a registry and a function made with queue.NewFunc", ErrNotATask)
	}
	if f.name == "" {
		return fmt.Errorf("%w: function task has an empty name", ErrNotATask)
	}
	cfg, err := f.cfg.Resolve()
	if err != nil {
		return fmt.Errorf("register %s: %w", f.name, err)
	}
	var zero A
	return reg.add(&entry{
		kind:   f.name,
		goType: fmt.Sprintf("func(context.Context, %T)", zero),
		cfg:    cfg,
		decode: func(payload []byte) (any, error) {
			var a A
			if err := json.Unmarshal(payload, &a); err != nil {
				return nil, err
			}
			return a, nil
		},
		run: func(ctx context.Context, args any) (any, error) { return f.fn(ctx, args.(A)) },
	})
}

// FuncCall is a function task bound to its arguments, ready to dispatch.
type FuncCall struct {
	kind string
	cfg  Config
	args any
}

// Kind returns the function task's name.
func (c *FuncCall) Kind() string { return c.kind }

// Config returns the function task's configuration.
func (c *FuncCall) Config() Config { return c.cfg }

// MarshalJSON encodes the arguments, which are the job's payload.
func (c *FuncCall) MarshalJSON() ([]byte, error) { return json.Marshal(c.args) }

var (
	ctxType = reflect.TypeFor[context.Context]()
	errType = reflect.TypeFor[error]()
)

// checkTask reports whether v's type has a Handle(context.Context) (R, error)
// method, or is a FuncCall.
func checkTask(v any) error {
	if _, ok := v.(*FuncCall); ok {
		if v.(*FuncCall) == nil {
			return fmt.Errorf("%w: nil *FuncCall", ErrNotATask)
		}
		return nil
	}
	t := reflect.TypeOf(v)
	if t == nil {
		return fmt.Errorf("%w: got nil", ErrNotATask)
	}
	if isNil(v) {
		return fmt.Errorf("%w: got a nil %s", ErrNotATask, t)
	}
	m, ok := t.MethodByName("Handle")
	if !ok || m.Type.NumIn() != 2 || m.Type.In(1) != ctxType || m.Type.NumOut() != 2 || m.Type.Out(1) != errType {
		return fmt.Errorf("%w: %s needs a method Handle(ctx context.Context) (R, error)", ErrNotATask, t)
	}
	return nil
}

func isNil(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return rv.IsNil()
	case reflect.Invalid:
		return true
	}
	return false
}

func kindOf(task any) (string, error) {
	if k, ok := task.(Kinder); ok {
		if name := k.Kind(); name != "" {
			return name, nil
		}
		return "", fmt.Errorf("%w: %T.Kind() returned an empty string", ErrNotATask, task)
	}
	t := reflect.TypeOf(task)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() == "" {
		return "", fmt.Errorf("%w: %T has no type name; give it a Kind() string method", ErrNotATask, task)
	}
	return t.Name(), nil
}

func configOf(task any) Config {
	if c, ok := task.(Configurer); ok {
		return c.Config()
	}
	return Config{}
}
