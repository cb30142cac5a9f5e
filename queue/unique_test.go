package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// utAdapter records what a client stores; it is a UniqueInserter and a
// UniqueTxInserter only when unique is set.
type utAdapter struct {
	queue.Adapter // nil: only Name and the inserts are called
	mu            sync.Mutex
	jobs          []queue.NewJob
}

func (a *utAdapter) Name() string { return "ut" }

func (a *utAdapter) Insert(_ context.Context, jobs []queue.NewJob) error {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.jobs = append(a.jobs, jobs...)
	return nil
}

func (a *utAdapter) InsertTx(ctx context.Context, _ any, jobs []queue.NewJob) error {
	return a.Insert(ctx, jobs)
}

func (a *utAdapter) stored() []queue.NewJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]queue.NewJob(nil), a.jobs...)
}

// utUniqueAdapter adds the unique capabilities: every job is new.
type utUniqueAdapter struct{ utAdapter }

func (a *utUniqueAdapter) InsertUnique(ctx context.Context, jobs []queue.NewJob) ([]queue.Dispatched, error) {
	if err := a.Insert(ctx, jobs); err != nil {
		return nil, err
	}
	res := make([]queue.Dispatched, len(jobs))
	for i := range jobs {
		res[i].ID = jobs[i].ID
	}
	return res, nil
}

func (a *utUniqueAdapter) InsertUniqueTx(ctx context.Context, _ any, jobs []queue.NewJob) ([]queue.Dispatched, error) {
	return a.InsertUnique(ctx, jobs)
}

// utTask is a task with a few fields to build keys from.
type utTask struct {
	Customer int               `json:"customer"`
	Note     string            `json:"note"`
	Extra    map[string]string `json:"extra,omitempty"`
	Optional string            `json:"optional,omitempty"`
}

func (*utTask) Handle(context.Context) (string, error) { return "", nil }

// utUniqueTask declares its key itself.
type utUniqueTask struct{ utTask }

func (*utUniqueTask) Unique() queue.UniqueOpts {
	return queue.UniqueOpts{Fields: []string{"customer"}}
}

func utClient(t *testing.T, a queue.Adapter, opts ...queue.ClientOption) *queue.Client {
	t.Helper()
	c, err := queue.NewClient(a, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUniqueOptsCheck(t *testing.T) {
	t.Parallel()
	live := queue.DefaultUniqueStates
	for name, o := range map[string]queue.UniqueOpts{
		"unknown mode":           {Mode: 9},
		"fields and payload":     {ByPayload: true, Fields: []string{"a"}},
		"empty field":            {Fields: []string{""}},
		"field twice":            {Fields: []string{"a", "a"}},
		"negative period":        {Period: -time.Second},
		"tiny period":            {Period: time.Microsecond},
		"throttle without":       {Mode: queue.UniqueThrottle},
		"states without running": {States: []queue.JobState{queue.StateScheduled, queue.StateAvailable, queue.StateRetryable}},
		"unknown state":          {States: append(append([]queue.JobState{}, live...), "done")},
		"empty states":           {States: []queue.JobState{}},
	} {
		if err := o.Check(); !errors.Is(err, queue.ErrInvalidConfig) {
			t.Errorf("%s: Check = %v; want ErrInvalidConfig", name, err)
		}
		c := utClient(t, &utUniqueAdapter{})
		if _, err := c.Dispatch(context.Background(), &utTask{}, queue.WithUnique(o)); !errors.Is(err, queue.ErrInvalidConfig) {
			t.Errorf("%s: Dispatch = %v; want ErrInvalidConfig", name, err)
		}
	}
	for name, o := range map[string]queue.UniqueOpts{
		"zero":           {},
		"throttle":       {Mode: queue.UniqueThrottle, Period: time.Minute},
		"replace fields": {Mode: queue.UniqueReplace, Fields: []string{"a", "b"}, ByQueue: true},
		"all states":     {States: queue.States},
	} {
		if err := o.Check(); err != nil {
			t.Errorf("%s: Check = %v", name, err)
		}
	}
}

// keyOf dispatches task and returns the unique key the adapter got.
func keyOf(t *testing.T, c *queue.Client, a *utUniqueAdapter, task any, opts ...queue.DispatchOption) queue.NewJob {
	t.Helper()
	if _, err := c.Dispatch(context.Background(), task, opts...); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	jobs := a.stored()
	return jobs[len(jobs)-1]
}

func TestUniqueKeys(t *testing.T) {
	t.Parallel()
	a := &utUniqueAdapter{}
	now := time.Date(2030, 5, 1, 10, 15, 0, 0, time.UTC)
	c := utClient(t, a, queue.WithClock(func() time.Time { return now }))
	byCustomer := queue.WithUnique(queue.UniqueOpts{Fields: []string{"customer"}})

	k1 := keyOf(t, c, a, &utTask{Customer: 1, Note: "a"}, byCustomer)
	if len(k1.UniqueKey) != 32 || k1.UniqueReplace || !equalStates(k1.UniqueStates, queue.DefaultUniqueStates) {
		t.Fatalf("job: key %x, states %v, replace %v", k1.UniqueKey, k1.UniqueStates, k1.UniqueReplace)
	}
	same := func(what string, want bool, j queue.NewJob) {
		t.Helper()
		if got := bytes.Equal(j.UniqueKey, k1.UniqueKey); got != want {
			t.Errorf("%s: same key = %v; want %v", what, got, want)
		}
	}
	same("another note", true, keyOf(t, c, a, &utTask{Customer: 1, Note: "b"}, byCustomer))
	same("another customer", false, keyOf(t, c, a, &utTask{Customer: 2, Note: "a"}, byCustomer))
	same("another queue, not in the key", true, keyOf(t, c, a, &utTask{Customer: 1}, byCustomer, queue.OnQueue("q2")))
	same("the task's own Unique", false, keyOf(t, c, a, &utUniqueTask{utTask{Customer: 1}})) // another kind
	same("whole payload", false, keyOf(t, c, a, &utTask{Customer: 1, Note: "a"}, queue.WithUnique(queue.UniqueOpts{ByPayload: true})))

	byQueue := queue.WithUnique(queue.UniqueOpts{Fields: []string{"customer"}, ByQueue: true})
	q1 := keyOf(t, c, a, &utTask{Customer: 1}, byQueue, queue.OnQueue("q1"))
	q2 := keyOf(t, c, a, &utTask{Customer: 1}, byQueue, queue.OnQueue("q2"))
	if bytes.Equal(q1.UniqueKey, q2.UniqueKey) || bytes.Equal(q1.UniqueKey, k1.UniqueKey) {
		t.Error("ByQueue: the queue does not change the key")
	}

	// The whole payload: map order does not matter, values do.
	byPayload := queue.WithUnique(queue.UniqueOpts{ByPayload: true})
	m1 := keyOf(t, c, a, &utTask{Extra: map[string]string{"a": "1", "b": "2"}}, byPayload)
	m2 := keyOf(t, c, a, &utTask{Extra: map[string]string{"b": "2", "a": "1"}}, byPayload)
	m3 := keyOf(t, c, a, &utTask{Extra: map[string]string{"a": "1", "b": "3"}}, byPayload)
	if !bytes.Equal(m1.UniqueKey, m2.UniqueKey) || bytes.Equal(m1.UniqueKey, m3.UniqueKey) {
		t.Error("ByPayload: equal payloads must share a key, others not")
	}

	// Period: the same key within a period, another in the next.
	throttle := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueThrottle, Period: time.Hour})
	p1 := keyOf(t, c, a, &utTask{}, throttle)
	if !equalStates(p1.UniqueStates, queue.States) {
		t.Errorf("throttle states %v; want all", p1.UniqueStates)
	}
	now = time.Date(2030, 5, 1, 10, 59, 59, 999e6, time.UTC)
	p2 := keyOf(t, c, a, &utTask{}, throttle)
	now = time.Date(2030, 5, 1, 11, 0, 0, 0, time.UTC)
	p3 := keyOf(t, c, a, &utTask{}, throttle)
	if !bytes.Equal(p1.UniqueKey, p2.UniqueKey) || bytes.Equal(p2.UniqueKey, p3.UniqueKey) {
		t.Error("Period: keys do not follow the hour")
	}
	daily := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueThrottle, Period: 24 * time.Hour})
	if bytes.Equal(keyOf(t, c, a, &utTask{}, daily).UniqueKey, p3.UniqueKey) {
		t.Error("another period length must give another key")
	}

	replace := keyOf(t, c, a, &utTask{}, queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueReplace}))
	if !replace.UniqueReplace {
		t.Error("UniqueReplace not passed on")
	}

	// A missing field is an error, not a shorter key; nothing is stored.
	before := len(a.stored())
	_, err := c.Dispatch(context.Background(), &utTask{}, queue.WithUnique(queue.UniqueOpts{Fields: []string{"optional"}}))
	if !errors.Is(err, queue.ErrInvalidConfig) || !strings.Contains(err.Error(), `"optional"`) {
		t.Errorf("missing field: %v", err)
	}
	if len(a.stored()) != before {
		t.Error("a job was stored after a key error")
	}
}

func equalStates(a, b []queue.JobState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A unique job to a backend that cannot enforce keys fails, and stores
// nothing: the error wraps ErrUniqueUnsupported and errors.ErrUnsupported.
func TestUniqueUnsupported(t *testing.T) {
	t.Parallel()
	a := &utAdapter{}
	c := utClient(t, a)
	ctx := context.Background()
	for name, dispatch := range map[string]func() error{
		"option": func() error {
			_, err := c.Dispatch(ctx, &utTask{}, queue.WithUnique(queue.UniqueOpts{}))
			return err
		},
		"task's Unique": func() error { _, err := c.Dispatch(ctx, &utUniqueTask{}); return err },
		"in a batch": func() error {
			_, err := c.DispatchMany(ctx, []any{&utTask{}, &utUniqueTask{}})
			return err
		},
		"in a transaction": func() error {
			_, err := c.DispatchResultTx(ctx, struct{}{}, &utUniqueTask{})
			return err
		},
	} {
		err := dispatch()
		if !errors.Is(err, queue.ErrUniqueUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v; want ErrUniqueUnsupported", name, err)
		}
	}
	if n := len(a.stored()); n != 0 {
		t.Fatalf("%d jobs stored", n)
	}
	// Without a key the same client dispatches as before.
	d, err := c.DispatchResult(ctx, &utTask{})
	if err != nil || d.Duplicate {
		t.Fatalf("plain DispatchResult = %+v, %v", d, err)
	}
	// Adapters that store neither keys nor tags refuse them themselves.
	j := a.stored()[0]
	j.UniqueKey, j.UniqueStates = []byte("k"), queue.DefaultUniqueStates
	if err := queue.CheckPlainJobs("x", []queue.NewJob{j}); !errors.Is(err, queue.ErrUniqueUnsupported) {
		t.Errorf("CheckPlainJobs(unique) = %v", err)
	}
	j.UniqueKey, j.UniqueStates, j.Tags = nil, nil, []string{"a"}
	if err := queue.CheckPlainJobs("x", []queue.NewJob{j}); !errors.Is(err, queue.ErrTagsUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CheckPlainJobs(tags) = %v", err)
	}
}

func TestDedupeUnique(t *testing.T) {
	t.Parallel()
	k := func(key string, replace bool) queue.NewJob {
		if key == "" {
			return queue.NewJob{}
		}
		return queue.NewJob{UniqueKey: []byte(key), UniqueReplace: replace}
	}
	rep := queue.DedupeUnique([]queue.NewJob{k("a", false), k("", false), k("a", false), k("b", true), k("", false), k("b", true), k("a", false)})
	want := []int{0, 1, 0, 5, 4, 5, 0}
	for i := range want {
		if rep[i] != want[i] {
			t.Fatalf("DedupeUnique = %v; want %v", rep, want)
		}
	}
}

func TestTagsAndMetaOptions(t *testing.T) {
	t.Parallel()
	a := &utAdapter{}
	c := utClient(t, a)
	ctx := context.Background()
	many := make([]string, queue.MaxTags+1)
	for i := range many {
		many[i] = "t" + strings.Repeat("x", i)
	}
	bad := map[string]queue.DispatchOption{
		"empty tag":          queue.WithTags(""),
		"space":              queue.WithTags("a b"),
		"comma":              queue.WithTags("a,b"),
		"non-ASCII":          queue.WithTags("ü"),
		"long tag":           queue.WithTags(strings.Repeat("a", queue.MaxTagLength+1)),
		"too many":           queue.WithTags(many...),
		"meta array":         queue.WithMeta(json.RawMessage(`[1, 2]`)),
		"meta string":        queue.WithMeta("hello"),
		"meta not JSON":      queue.WithMeta([]byte(`{"a":`)),
		"meta NUL":           queue.WithMeta(map[string]string{"a": "x\x00y"}),
		"meta NUL escape":    queue.WithMeta(json.RawMessage(`{"a": "\u0000"}`)),
		"meta bad UTF-8":     queue.WithMeta(json.RawMessage("{\"a\": \"\xff\"}")),
		"meta unmarshalable": queue.WithMeta(map[string]any{"f": func() {}}),
		"meta too big":       queue.WithMeta(map[string]string{"a": strings.Repeat("x", queue.MaxMetaBytes)}),
	}
	for name, opt := range bad {
		_, err := c.Dispatch(ctx, &utTask{}, opt)
		if !errors.Is(err, queue.ErrInvalidConfig) && !errors.Is(err, queue.ErrInvalidPayload) {
			t.Errorf("%s: %v; want ErrInvalidConfig", name, err)
		}
	}
	if n := len(a.stored()); n != 0 {
		t.Fatalf("%d jobs stored from bad options", n)
	}
	_, err := c.Dispatch(ctx, &utTask{},
		queue.WithTags("tenant:42", "env=prod", "tenant:42"), queue.WithTags("a/b_c-d.e+f@g"),
		queue.WithMeta(map[string]any{"z": 1, "a": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	j := a.stored()[0]
	if strings.Join(j.Tags, " ") != "tenant:42 env=prod a/b_c-d.e+f@g" || string(j.Meta) != `{"a":"x","z":1}` {
		t.Fatalf("job tags %q meta %s", j.Tags, j.Meta)
	}
	// No metadata: nil, {} and null all mean none; the last WithMeta wins.
	for _, m := range []any{nil, json.RawMessage(`{}`), json.RawMessage(` null `), map[string]any{}} {
		if _, err := c.Dispatch(ctx, &utTask{}, queue.WithMeta(map[string]int{"old": 1}), queue.WithMeta(m)); err != nil {
			t.Fatal(err)
		}
		if got := a.stored()[len(a.stored())-1].Meta; got != nil {
			t.Errorf("WithMeta(%v): meta %s; want none", m, got)
		}
	}
	// Chained.
	if _, err := c.Task(&utTask{}).Tags("chained").Meta(map[string]int{"n": 1}).Dispatch(ctx); err != nil {
		t.Fatal(err)
	}
	if j := a.stored()[len(a.stored())-1]; len(j.Tags) != 1 || j.Tags[0] != "chained" || string(j.Meta) != `{"n":1}` {
		t.Errorf("chained: tags %v meta %s", j.Tags, j.Meta)
	}
}
