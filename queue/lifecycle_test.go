package queue

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

func TestNextOutcomeFollowsTheRules(t *testing.T) {
	j := &Job{ID: uuid.New(), Token: 7, Attempt: 2, MaxRetries: 2, RetryDelay: time.Minute}
	boom := errors.New("boom")
	for name, c := range map[string]struct {
		job    *Job
		res    json.RawMessage
		err    error
		retry  bool
		want   JobState
		delay  time.Duration
		inText string
	}{
		"success":                  {j, json.RawMessage(`1`), nil, true, StateCompleted, 0, ""},
		"retry left":               {j, nil, boom, true, StateRetryable, time.Minute, "boom"},
		"task says no retry":       {j, nil, boom, false, StateFailed, 0, "boom"},
		"last attempt":             {&Job{Attempt: 3, MaxRetries: 2}, nil, boom, true, StateFailed, 0, "boom"},
		"cancel":                   {j, nil, Cancel(boom), true, StateCancelled, 0, "boom"},
		"unstorable result":        {j, json.RawMessage(`"a\u0000"`), nil, true, StateFailed, 0, "cannot be stored"},
		"permanent nil":            {j, nil, Permanent(nil), false, StateFailed, 0, "no error given"},
		"panicking Error":          {j, nil, panicky{}, false, StateFailed, 0, "panicked"},
		"typed nil PermanentError": {j, nil, (*PermanentError)(nil), false, StateFailed, 0, "no error given"},
	} {
		o := NextOutcome(c.job, c.res, c.err, func(error) (bool, time.Duration) { return c.retry, c.job.RetryDelay })
		if o.State != c.want || o.Delay != c.delay || !strings.Contains(o.Error, c.inText) || o.Token != c.job.Token {
			t.Errorf("%s: got %+v, want %s delay %v with %q", name, o, c.want, c.delay, c.inText)
		}
		if err := o.Check(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

type panicky struct{}

func (panicky) Error() string { panic("no") }

func TestOutcomeMethods(t *testing.T) {
	j := &Job{ID: uuid.New(), Token: 1}
	if o := HandBack(j, 0); o.State != StateAvailable || o.Counts() || o.Finishes() || o.RunsAgain() {
		t.Errorf("hand-back now: %+v", o)
	}
	if o := HandBack(j, time.Second); o.State != StateScheduled || o.Counts() || !o.RunsAgain() {
		t.Errorf("hand-back later: %+v", o)
	}
	if o := Failed(j, errors.New("x")); !o.Finishes() || !o.Counts() {
		t.Errorf("failed: %+v", o)
	}
	if err := (Outcome{State: StateRunning}).Check(); err == nil {
		t.Error("an outcome ending running passed Check")
	}
	if err := (Outcome{State: StateFailed, Result: json.RawMessage(`1`)}).Check(); err == nil {
		t.Error("a failed outcome with a result passed Check")
	}
}

func TestCleanErrorText(t *testing.T) {
	s := CleanErrorText("a\x00b\xffc" + strings.Repeat("é", MaxErrorLength))
	if strings.ContainsRune(s, 0) || !utf8.ValidString(s) || len(s) > MaxErrorLength || !strings.Contains(s, "[cut:") {
		t.Errorf("cleaned text is not storable or not cut: %q...", s[:20])
	}
	if CleanErrorText("plain") != "plain" {
		t.Error("clean text changed")
	}
}

func TestCheckResult(t *testing.T) {
	for in, ok := range map[string]bool{
		`{"a":"b"}`:         true,
		`"\\u0000"`:         true, // an escaped backslash followed by u0000 is text, not NUL
		`"\u0000"`:          false,
		`{"k":["x\u0000"]}`: false,
		"\"\xff\"":          false,
		`{`:                 false,
	} {
		if err := CheckResult(json.RawMessage(in)); (err == nil) != ok {
			t.Errorf("CheckResult(%s) = %v, want ok=%v", in, err, ok)
		}
	}
}

type textTask struct {
	Name  string
	Tags  []string
	Meta  map[string]string
	Inner *struct{ Note string }
	Raw   []byte
}

func (textTask) Handle(ctx context.Context) (int, error) { return 0, nil }

func TestDispatchRefusesTextThatCannotTravel(t *testing.T) {
	for name, task := range map[string]*textTask{
		"invalid UTF-8":        {Name: "a\xffb"},
		"NUL in a slice":       {Tags: []string{"ok", "x\x00"}},
		"NUL in a map value":   {Meta: map[string]string{"k": "\x00"}},
		"invalid UTF-8 nested": {Inner: &struct{ Note string }{"\xc3"}},
	} {
		_, _, err := (&Client{}).build(task, &dispatchOpts{})
		if !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("%s: build = %v, want ErrInvalidPayload", name, err)
		}
	}
	if _, _, err := (&Client{}).build(&textTask{Name: "fine", Raw: []byte{0, 0xff}}, &dispatchOpts{}); err != nil {
		t.Errorf("bytes in a []byte field: %v", err)
	}
	if _, err := (Config{MaxRetries: MaxRetriesLimit + 1}).Resolve(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("MaxRetries above the limit: %v", err)
	}
}

func TestStorableFailsOnlyWhatCannotBeStored(t *testing.T) {
	j := &Job{ID: uuid.New(), Token: 3}
	if o := Storable(Completed(j, json.RawMessage(`{"ok":1}`))); o.State != StateCompleted {
		t.Errorf("a storable outcome changed: %+v", o)
	}
	if o := Storable(Outcome{ID: j.ID, Token: 3, State: StateRetryable, Error: "bad \xff nul \x00"}); o.State != StateRetryable || !utf8.ValidString(o.Error) || strings.ContainsRune(o.Error, 0) {
		t.Errorf("error text not cleaned, or the outcome changed: %+v", o)
	}
	for name, bad := range map[string]Outcome{
		"running":       {ID: j.ID, Token: 3, State: StateRunning},
		"NUL in result": {ID: j.ID, Token: 3, State: StateCompleted, Result: json.RawMessage(`"\u0000"`)},
	} {
		if o := Storable(bad); o.State != StateFailed || o.Token != 3 || o.Error == "" {
			t.Errorf("%s: %+v, want failed with the reason under the same token", name, o)
		}
	}
}
