package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

type sendEmail struct {
	TaskBase
	To      string
	Subject string
	secret  string //nolint:unused // unexported fields do not travel
}

func (*sendEmail) Config() Config {
	return Config{Queue: "emails", MaxRetries: 5, RetryDelay: 2 * time.Minute, Timeout: 30 * time.Second}
}

func (t *sendEmail) Handle(ctx context.Context) (bool, error) { return t.To != "", nil }

type minimal struct{}

func (minimal) Handle(context.Context) (struct{}, error) { return struct{}{}, nil }

func TestConfigDefaultsAndSentinels(t *testing.T) {
	r, err := Config{}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.Queue != "default" || r.MaxRetries != 3 || r.RetryDelay != 60*time.Second || r.Timeout != 0 {
		t.Errorf("defaults = %+v, want the guide's: default, 3, 60s, no timeout", r)
	}
	r, err = Config{MaxRetries: NoRetries, RetryDelay: RetryImmediately}.Resolve()
	if err != nil || r.MaxRetries != 0 || r.RetryDelay != 0 {
		t.Errorf("sentinels resolved to %+v, %v; want 0 retries, no delay", r, err)
	}
}

func TestConfigRejectsOutOfRangeValues(t *testing.T) {
	for name, c := range map[string]Config{
		"negative retries":     {MaxRetries: -5},
		"negative retry delay": {RetryDelay: -time.Minute},
		"negative timeout":     {Timeout: -time.Second},
		"queue with space":     {Queue: "a b"},
		"queue too long":       {Queue: strings.Repeat("q", MaxQueueNameLength+1)},
		"queue control char":   {Queue: "a\x00b"},
	} {
		_, err := c.Resolve()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestRegisterRejectsDuplicatesAndCollisions(t *testing.T) {
	reg := NewRegistry()
	if err := Register(reg, &sendEmail{}); err != nil {
		t.Fatal(err)
	}
	err := Register(reg, &sendEmail{})
	if !errors.Is(err, ErrDuplicateKind) || !strings.Contains(err.Error(), "registered already") {
		t.Errorf("second registration: %v", err)
	}
	err = Register(reg, &otherSendEmail{})
	if !errors.Is(err, ErrDuplicateKind) || !strings.Contains(err.Error(), "Kind() string") {
		t.Errorf("kind collision: %v; want advice to add Kind()", err)
	}
	if err := Register(reg, &renamed{}); err != nil {
		t.Errorf("a type with its own Kind(): %v", err)
	}
	if got := reg.Kinds(); len(got) != 2 || got[0] != "emails.SendEmailV2" || got[1] != "sendEmail" {
		t.Errorf("kinds = %v", got)
	}
	if err := Register[bool](nil, &sendEmail{}); err == nil {
		t.Error("Register accepted a nil registry")
	}
}

// otherSendEmail stands for a same-named type from another package.
type otherSendEmail struct{ sendEmail }

func (*otherSendEmail) Kind() string { return "sendEmail" }

type renamed struct{ sendEmail }

func (*renamed) Kind() string { return "emails.SendEmailV2" }

func TestPrepareDecodesAFreshValueWithMetadata(t *testing.T) {
	reg := NewRegistry()
	MustRegister(reg, &sendEmail{})
	meta := Metadata{ID: uuid.New(), Attempt: 2, DispatchedAt: time.Now()}
	x, err := reg.Prepare("sendEmail", []byte(`{"To":"a@example.com","Subject":"hi"}`), meta)
	if err != nil {
		t.Fatal(err)
	}
	task := x.Task().(*sendEmail)
	if task.To != "a@example.com" || task.ID() != meta.ID || task.Attempt() != 2 {
		t.Errorf("decoded %+v", task)
	}
	res, err := x.Handle(context.Background())
	if err != nil || string(res) != "true" {
		t.Errorf("Handle = %s, %v", res, err)
	}
	if !x.ShouldRetry(errors.New("x")) {
		t.Error("a task without ShouldRetry should retry every error")
	}
	if x.Failed(context.Background(), errors.New("x")) {
		t.Error("Failed reported a hook the task does not have")
	}

	if _, err := reg.Prepare("nope", nil, meta); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
	for _, bad := range []string{`{"To": 5}`, `[1,2]`, `"text"`, `{`} {
		if _, err := reg.Prepare("sendEmail", []byte(bad), meta); !errors.Is(err, ErrDecode) {
			t.Errorf("payload %s: err = %v, want ErrDecode", bad, err)
		}
	}
}

func TestKindIsTheTypeName(t *testing.T) {
	reg := NewRegistry()
	MustRegister(reg, &sendEmail{})
	MustRegister(reg, minimal{})
	if _, ok := reg.Config("sendEmail"); !ok {
		t.Error("pointer task not registered under its type name")
	}
	if c, ok := reg.Config("minimal"); !ok || c.Queue != "default" {
		t.Errorf("value task: %+v %v", c, ok)
	}
}

func TestPayloadIsTheExportedFields(t *testing.T) {
	b, err := json.Marshal(&sendEmail{To: "x", secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"To":"x","Subject":""}` {
		t.Errorf("payload %s: want exported fields only, no metadata", b)
	}
}

func TestCheckTask(t *testing.T) {
	for _, v := range []any{nil, 3, struct{}{}, (*sendEmail)(nil), (*FuncCall)(nil)} {
		if err := checkTask(v); !errors.Is(err, ErrNotATask) {
			t.Errorf("checkTask(%#v) = %v, want ErrNotATask", v, err)
		}
	}
	if err := checkTask(&sendEmail{}); err != nil {
		t.Error(err)
	}
}

func TestDispatchOptionsValidate(t *testing.T) {
	var o dispatchOpts
	for _, opt := range []DispatchOption{Delay(0), Delay(-1), OnQueue(""), RetryAfter(0), RetryAfter(-time.Second)} {
		if err := opt(&o); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("option accepted a bad value: %v", err)
		}
	}
	if err := RetryAfter(RetryImmediately)(&o); err != nil {
		t.Errorf("RetryAfter(RetryImmediately): %v", err)
	}
}

func TestMetadataInContext(t *testing.T) {
	if _, ok := MetadataFromContext(context.Background()); ok {
		t.Error("metadata found in an empty context")
	}
	m := Metadata{ID: uuid.New()}
	got, ok := MetadataFromContext(ContextWithMetadata(context.Background(), m))
	if !ok || got.ID != m.ID {
		t.Errorf("got %+v %v", got, ok)
	}
	if SetMetadata(minimal{}, m) {
		t.Error("SetMetadata reported success on a task without TaskBase")
	}
}

func TestCancelError(t *testing.T) {
	base := errors.New("withdrawn")
	err := Cancel(base)
	var ce *CancelError
	if !errors.As(err, &ce) || !errors.Is(err, base) || err.Error() != "job cancelled by task: withdrawn" {
		t.Errorf("Cancel: %v", err)
	}
}

func TestParseJobState(t *testing.T) {
	if s, err := ParseJobState("failed"); err != nil || s != StateFailed {
		t.Error(s, err)
	}
	if _, err := ParseJobState("done"); err == nil || !strings.Contains(err.Error(), "completed") {
		t.Errorf("ParseJobState(done) = %v; want the list of states", err)
	}
}

func TestPermanentErrorsAreNotRetriedByDefault(t *testing.T) {
	reg := NewRegistry()
	MustRegister(reg, minimal{})
	x, err := reg.Prepare("minimal", nil, Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	base := errors.New("row gone")
	perm := fmt.Errorf("load: %w", Permanent(base))
	if x.ShouldRetry(perm) || !x.ShouldRetry(base) {
		t.Errorf("ShouldRetry(permanent)=%v ShouldRetry(plain)=%v; want false, true", x.ShouldRetry(perm), x.ShouldRetry(base))
	}
	if !IsPermanent(perm) || !errors.Is(perm, base) || perm.Error() != "load: row gone" {
		t.Errorf("Permanent wrapping: %v", perm)
	}
}

func TestCheckNewJobs(t *testing.T) {
	good := func() NewJob {
		return NewJob{ID: uuid.New(), Kind: "k", Queue: "q", Payload: []byte(`{}`)}
	}
	if err := CheckNewJobs([]NewJob{good(), good()}); err != nil {
		t.Fatalf("a good batch: %v", err)
	}
	dup := good()
	cases := map[string][]NewJob{
		"empty batch":     nil,
		"no id":           {{Kind: "k", Queue: "q"}},
		"no kind":         {{ID: uuid.New(), Queue: "q"}},
		"bad queue":       {{ID: uuid.New(), Kind: "k", Queue: "a b"}},
		"id twice":        {dup, dup},
		"invalid payload": {{ID: uuid.New(), Kind: "k", Queue: "q", Payload: []byte(`{`)}},
		"negative delay":  {{ID: uuid.New(), Kind: "k", Queue: "q", Delay: -time.Second}},
	}
	for name, jobs := range cases {
		if err := CheckNewJobs(jobs); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}
