package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
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
	// target returns a pointer to a fresh value for a payload to be decoded
	// into. Only a factory's can fail, with an error wrapping ErrFactory.
	target func() (any, error)
	// value turns a decoded target into the value Handle runs on.
	value func(target any) any
	// run calls Handle (or the function) on a decoded value.
	run func(ctx context.Context, task any) (any, error)
}

// Register adds the task type of proto to reg. proto is a value of the type
// (usually a pointer to a zero struct, &SendEmail{}); it only names the type.
// Each job is decoded into a fresh zero value, so proto's fields are not
// copied: a proto holding dependencies in fields the payload does not set
// (unexported ones, or json:"-" ones) is refused with ErrInvalidConfig; build
// such tasks with RegisterFactory. The kind is proto's Kind() or its type
// name. Registering a kind twice, or a type whose Config is invalid, returns
// an error.
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
	if elem.Kind() == reflect.Struct && !isNil(proto) {
		sv := reflect.ValueOf(proto)
		if isPtr {
			sv = sv.Elem()
		}
		if name := firstSet(sv, fieldsOf(elem).deps); name != "" {
			return fmt.Errorf("%w: register %s: the prototype %s sets field %s, which Register does not keep (each job is decoded into a fresh zero value); "+
				"to give tasks dependencies, register a function that builds them with queue.RegisterFactory", ErrInvalidConfig, kind, t, name)
		}
	}
	return reg.add(&entry{
		kind:   kind,
		goType: t.String(),
		cfg:    cfg,
		target: func() (any, error) { return reflect.New(elem).Interface(), nil },
		value:  derefUnless(isPtr),
		run: func(ctx context.Context, task any) (any, error) {
			return task.(Task[R]).Handle(ctx)
		},
	})
}

// MustRegister is Register that panics on error, for package-level setup.
func MustRegister[R any](reg *Registry, proto Task[R]) {
	if err := Register(reg, proto); err != nil {
		panic(err)
	}
}

// RegisterFactory adds the task type T to reg, with newTask building the
// value each job runs on: the way to give Handle its database handle, mailer
// or HTTP client without package-level variables.
//
//	queue.RegisterFactory(reg, func() *SendEmail { return &SendEmail{mailer: m} })
//
// The payload stays exactly the exported fields. newTask sets dependencies
// only, in fields the payload does not set: unexported fields, or exported
// ones tagged json:"-". For every job the worker copies the value newTask
// returns into a new value of T and decodes the payload into that copy, so
//
//   - every execution has a value of its own, even if newTask returns the
//     same pointer each time; the copy is shallow, so what a dependency
//     field points to (a *sql.DB, a mailer) is shared, as it is meant to be,
//     and state one execution must not share with another (a buffer, a map)
//     has to be made anew in each call of newTask;
//   - a payload field newTask leaves non-zero would silently become a
//     default for jobs whose payload lacks it, so it is an error.
//
// T is a struct type or a pointer to one. Its kind and Config are read from
// a zero T, as a dispatcher reads them from a value without dependencies, so
// Kind() and Config() must not depend on injected fields. Hooks (Failed,
// ShouldRetry), TaskBase metadata and a worker's Resolver see the built value.
//
// RegisterFactory calls newTask once to check it, and returns an error
// wrapping ErrFactory if it panics, returns nil or sets a payload field.
// Workers call newTask for every job they claim, on their fetch loop and
// possibly from several goroutines: keep it cheap (assemble a struct, no
// I/O) and safe for concurrent use. When it misbehaves there, the job it was
// building fails with an error wrapping ErrFactory; the worker goes on.
func RegisterFactory[T Task[R], R any](reg *Registry, newTask func() T) error {
	t := reflect.TypeFor[T]()
	if reg == nil {
		return fmt.Errorf("%w: RegisterFactory called with a nil *Registry; create one with queue.NewRegistry", ErrInvalidConfig)
	}
	if newTask == nil {
		return fmt.Errorf("%w: RegisterFactory called with a nil function for %s", ErrNotATask, t)
	}
	isPtr := t.Kind() == reflect.Pointer
	elem := t
	if isPtr {
		elem = t.Elem()
	}
	if elem.Kind() != reflect.Struct {
		return fmt.Errorf("%w: RegisterFactory needs a struct type or a pointer to one, not %s (a task without fields needs no factory; use queue.Register)", ErrNotATask, t)
	}
	zero := reflect.New(elem)
	if !isPtr {
		zero = zero.Elem()
	}
	kind, err := kindOf(zero.Interface())
	if err != nil {
		return err
	}
	cfg, err := configOf(zero.Interface()).Resolve()
	if err != nil {
		return fmt.Errorf("register %s: %w", kind, err)
	}
	payload := fieldsOf(elem).payload
	target := func() (v any, err error) {
		defer func() {
			if p := recover(); p != nil {
				v, err = nil, fmt.Errorf("%w: %s: the factory panicked: %v\n%s", ErrFactory, kind, p, debug.Stack())
			}
		}()
		built := reflect.ValueOf(newTask())
		if isPtr {
			if built.IsNil() {
				return nil, fmt.Errorf("%w: %s: the factory returned a nil %s; return a new value from each call", ErrFactory, kind, t)
			}
			built = built.Elem()
		}
		if name := firstSet(built, payload); name != "" {
			return nil, fmt.Errorf("%w: %s: the factory set the payload field %s; payload fields come from the job, so the factory must leave them zero "+
				"(keep dependencies in unexported fields or fields tagged json:\"-\")", ErrFactory, kind, name)
		}
		fresh := reflect.New(elem)
		fresh.Elem().Set(built)
		return fresh.Interface(), nil
	}
	if _, err := target(); err != nil {
		return fmt.Errorf("register %s: %w", kind, err)
	}
	return reg.add(&entry{
		kind:   kind,
		goType: t.String(),
		cfg:    cfg,
		target: target,
		value:  derefUnless(isPtr),
		run: func(ctx context.Context, task any) (any, error) {
			return task.(T).Handle(ctx)
		},
	})
}

// MustRegisterFactory is RegisterFactory that panics on error, for setup code.
func MustRegisterFactory[T Task[R], R any](reg *Registry, newTask func() T) {
	if err := RegisterFactory(reg, newTask); err != nil {
		panic(err)
	}
}

// derefUnless returns the value function of an entry: the decoded pointer
// itself for pointer task types, else the value it points to.
func derefUnless(isPtr bool) func(target any) any {
	if isPtr {
		return func(target any) any { return target }
	}
	return func(target any) any { return reflect.ValueOf(target).Elem().Interface() }
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
// its metadata. It fails with ErrUnknownKind, ErrDecode, or ErrFactory (the
// kind's factory misbehaved); a worker moves such a job to failed with the
// error as the reason.
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
	target, err := e.target()
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(payload, target); err != nil {
		return nil, fmt.Errorf("%w: kind %s: %v", ErrDecode, kind, err)
	}
	task := e.value(target)
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
	tx      TxCompletion // CompleteTx's, when txOn
	txOn    bool
}

// EnableTxCompletion lets the attempt's Handle complete the job in a
// transaction of its own (CompleteTx) on tc, the backend the worker
// claimed j from as workerID. It returns the completion, which the worker
// asks after Handle returns (Used). Workers call it before Handle.
func (x *Execution) EnableTxCompletion(tc TxCompleter, workerID string, j *Job) *TxCompletion {
	x.tx = TxCompletion{tc: tc, workerID: workerID, lease: j.Lease()}
	x.txOn = true
	return &x.tx
}

// Task returns the decoded task value.
func (x *Execution) Task() any { return x.task }

// Handle runs the task's Handle with its metadata in ctx and returns the
// result encoded as JSON; nil for a task whose result type is struct{}.
func (x *Execution) Handle(ctx context.Context) (json.RawMessage, error) {
	av := &attemptValues{meta: x.Meta}
	if x.txOn {
		av.tx = &x.tx
	}
	ctx = context.WithValue(ctx, metadataKey{}, av)
	res, err := x.e.run(ctx, x.task)
	if err != nil {
		return nil, err
	}
	if _, none := res.(struct{}); none {
		// Handle(ctx) (struct{}, error): the task has no result, and none
		// is stored (the result column stays NULL; WaitResult gives the
		// zero value), so the completion is the cheap plain one.
		return nil, nil
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
		target: func() (any, error) { return new(A), nil },
		value:  func(target any) any { return *target.(*A) },
		run:    func(ctx context.Context, args any) (any, error) { return f.fn(ctx, args.(A)) },
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
	if _, ok := taskTypes.Load(t); ok {
		return nil
	}
	m, ok := t.MethodByName("Handle")
	if !ok || m.Type.NumIn() != 2 || m.Type.In(1) != ctxType || m.Type.NumOut() != 2 || m.Type.Out(1) != errType {
		return fmt.Errorf("%w: %s needs a method Handle(ctx context.Context) (R, error)", ErrNotATask, t)
	}
	taskTypes.Store(t, struct{}{})
	return nil
}

// taskTypes holds the types checkTask found to have a Handle method:
// looking the method up allocates, and every dispatch checks its task.
var taskTypes sync.Map

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

// ErrFactory means a function registered with RegisterFactory misbehaved: it
// panicked, returned nil, or set a payload field. A worker fails the job it
// was building with the reason and goes on.
var ErrFactory = errors.New("tasq: task factory misbehaved")

// KindOf returns the kind task is stored under: its Kind(), or the name of
// its type (without the pointer). It fails with ErrNotATask for nil, for an
// empty Kind() and for a type without a name.
func KindOf(task any) (string, error) {
	if reflect.TypeOf(task) == nil {
		return "", fmt.Errorf("%w: KindOf(nil)", ErrNotATask)
	}
	return kindOf(task)
}

// taskFields splits the fields of a task struct type into those a payload
// decodes into and those it never sets, as index paths for FieldByIndex.
type taskFields struct {
	// payload: the fields encoding/json sets, exported and not tagged
	// json:"-", including those promoted from embedded structs. An embedded
	// pointer to a struct with such fields counts as one payload field
	// (encoding/json allocates it).
	payload [][]int
	// deps: the fields a payload never sets (unexported, or tagged
	// json:"-"), except an embedded TaskBase, whose metadata the worker sets.
	deps [][]int
}

var taskBaseType = reflect.TypeFor[TaskBase]()

// maxEmbedDepth bounds the walk through embedded structs.
const maxEmbedDepth = 16

func fieldsOf(t reflect.Type) taskFields {
	var f taskFields
	f.walk(t, nil, 0)
	return f
}

func (f *taskFields) walk(t reflect.Type, prefix []int, depth int) {
	for i := range t.NumField() {
		sf := t.Field(i)
		idx := append(append([]int(nil), prefix...), i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			f.deps = append(f.deps, idx)
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous {
			ft := sf.Type
			isPtr := ft.Kind() == reflect.Pointer
			if isPtr {
				ft = ft.Elem()
			}
			switch {
			case ft == taskBaseType:
				continue
			case !sf.IsExported() && ft.Kind() != reflect.Struct:
				f.deps = append(f.deps, idx)
				continue
			case name == "" && ft.Kind() == reflect.Struct && depth < maxEmbedDepth:
				if !isPtr {
					f.walk(ft, idx, depth+1)
					continue
				}
				var sub taskFields
				sub.walk(ft, nil, depth+1)
				if len(sub.payload) > 0 {
					f.payload = append(f.payload, idx)
				} else {
					f.deps = append(f.deps, idx)
				}
				continue
			}
			f.payload = append(f.payload, idx)
			continue
		}
		if sf.IsExported() {
			f.payload = append(f.payload, idx)
		} else {
			f.deps = append(f.deps, idx)
		}
	}
}

// firstSet returns the name of the first field of the struct value v, among
// paths, that is not zero ("" if none is). A field behind a nil embedded
// pointer is zero.
func firstSet(v reflect.Value, paths [][]int) string {
	for _, p := range paths {
		fv, err := v.FieldByIndexErr(p)
		if err != nil || fv.IsZero() {
			continue
		}
		t := v.Type()
		names := make([]string, len(p))
		for i, j := range p {
			if t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			sf := t.Field(j)
			names[i], t = sf.Name, sf.Type
		}
		return strings.Join(names, ".")
	}
	return ""
}
