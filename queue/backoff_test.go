package queue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestExponentialDoublesUpToMax(t *testing.T) {
	for name, c := range map[string]struct {
		e       Exponential
		attempt int
		base    time.Duration
		want    time.Duration
	}{
		"first attempt waits Base":        {Exponential{Base: time.Second, Max: time.Hour}, 0, time.Minute, time.Second},
		"second waits twice Base":         {Exponential{Base: time.Second, Max: time.Hour}, 1, time.Minute, 2 * time.Second},
		"fifth waits 16 Base":             {Exponential{Base: time.Second, Max: time.Hour}, 4, time.Minute, 16 * time.Second},
		"capped at Max":                   {Exponential{Base: time.Second, Max: 10 * time.Second}, 4, time.Minute, 10 * time.Second},
		"Base 0 grows from the job's":     {Exponential{Max: time.Hour}, 2, time.Minute, 4 * time.Minute},
		"Max 0 is DefaultBackoffMax":      {Exponential{Base: time.Hour}, 10, 0, DefaultBackoffMax},
		"job delay above the default Max": {Exponential{}, 0, 48 * time.Hour, DefaultBackoffMax},
		"nothing to grow from":            {Exponential{}, 5, 0, 0},
		"negative attempt is the first":   {Exponential{Base: time.Second}, -3, 0, time.Second},
		"negative job delay is none":      {Exponential{}, 3, -time.Second, 0},
	} {
		if got := c.e.DelayWith(c.attempt, c.base, 0); got != c.want {
			t.Errorf("%s: DelayWith(%d, %v) = %v, want %v", name, c.attempt, c.base, got, c.want)
		}
		if got := c.e.Delay(c.attempt, c.base); got != c.want { // no jitter: Delay is DelayWith
			t.Errorf("%s: Delay(%d, %v) = %v, want %v", name, c.attempt, c.base, got, c.want)
		}
	}
}

func TestExponentialNeverOverflows(t *testing.T) {
	for _, e := range []Exponential{
		{Base: time.Nanosecond, Max: MaxRescheduleDelay},
		{Base: MaxRescheduleDelay, Max: MaxRescheduleDelay},
		{Base: 3 * time.Nanosecond, Max: MaxRescheduleDelay - 1},
		{Max: 7 * time.Hour},
	} {
		prev := time.Duration(0)
		for _, attempt := range []int{0, 1, 2, 30, 61, 62, 63, 64, 65, 100, 1 << 20, MaxRetriesLimit, math.MaxInt} {
			d := e.DelayWith(attempt, time.Duration(math.MaxInt64), 0)
			maxD := e.Max
			if d <= 0 || d > maxD || d < prev {
				t.Fatalf("%+v attempt %d: %v (previous %v); want a positive delay, growing, at most %v", e, attempt, d, prev, maxD)
			}
			prev = d
		}
		if prev != e.Max {
			t.Errorf("%+v: the delay of a huge attempt is %v, want Max %v", e, prev, e.Max)
		}
	}
}

func TestExponentialJitterStaysInBounds(t *testing.T) {
	e := Exponential{Base: time.Second, Max: time.Minute, Jitter: 0.25}
	const d = 8 * time.Second // attempt 3
	for r, want := range map[float64]time.Duration{
		0:   d,
		0.5: d - time.Second,                              // 8s × 0.25 × 0.5
		-1:  d, 1: d, 2: d, math.NaN(): d, math.Inf(1): d, // outside [0, 1): taken as 0
	} {
		if got := e.DelayWith(3, 0, r); got != want {
			t.Errorf("DelayWith(3, r=%v) = %v, want %v", r, got, want)
		}
	}
	if got := e.DelayWith(3, 0, math.Nextafter(1, 0)); got < d*3/4 || got > d*3/4+time.Nanosecond {
		t.Errorf("DelayWith(3, r just below 1) = %v, want the shortest wait, %v", got, d*3/4)
	}
	full := Exponential{Base: time.Hour, Max: MaxRescheduleDelay, Jitter: 1}
	if got := full.DelayWith(1000, 0, math.Nextafter(1, 0)); got < 0 || got > MaxRescheduleDelay {
		t.Errorf("full jitter near r=1 on the largest delay: %v", got)
	}
	// Delay draws r itself: every draw in [d×(1−Jitter), d], and they differ.
	lo, hi := d, time.Duration(0)
	for range 10000 {
		got := e.Delay(3, 0)
		if got < d*3/4 || got > d {
			t.Fatalf("Delay(3) = %v, outside [%v, %v]", got, d*3/4, d)
		}
		lo, hi = min(lo, got), max(hi, got)
	}
	if hi-lo < d/8 { // half the jitter range; missing it in 10,000 draws has odds of about 2^-10000
		t.Errorf("10,000 jittered delays spread over [%v, %v] only", lo, hi)
	}
}

func TestResolveChecksBackoff(t *testing.T) {
	var nilExp *Exponential
	for name, c := range map[string]struct {
		b     Backoff
		field string
	}{
		"negative Base":        {Exponential{Base: -time.Second}, "Backoff.Base"},
		"negative Max":         {Exponential{Max: -time.Second}, "Backoff.Max"},
		"Max above the limit":  {Exponential{Max: MaxRescheduleDelay + 1}, "Backoff.Max"},
		"Base above Max":       {Exponential{Base: time.Hour, Max: time.Minute}, "Backoff.Base"},
		"Base above default":   {Exponential{Base: 2 * DefaultBackoffMax}, "Backoff.Base"},
		"Jitter above 1":       {Exponential{Jitter: 1.5}, "Backoff.Jitter"},
		"negative Jitter":      {Exponential{Jitter: -0.1}, "Backoff.Jitter"},
		"NaN Jitter":           {Exponential{Jitter: math.NaN()}, "Backoff.Jitter"},
		"pointer, bad field":   {&Exponential{Jitter: 2}, "Backoff.Jitter"},
		"nil *Exponential":     {nilExp, "Backoff is a nil *queue.Exponential"},
		"nil custom pointer":   {(*fixedBackoff)(nil), "Backoff is a nil"},
		"negative RetryDelay!": {Exponential{}, ""}, // a valid Backoff; the check below is on RetryDelay
	} {
		cfg := Config{Backoff: c.b}
		if c.field == "" {
			cfg.RetryDelay = -5 * time.Second
			c.field = "RetryDelay"
		}
		_, err := cfg.Resolve()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Resolve = %v, want ErrInvalidConfig naming %s", name, err, c.field)
		}
	}
	for name, b := range map[string]Backoff{
		"none":           nil,
		"zero":           Exponential{},
		"full":           Exponential{Base: time.Second, Max: MaxRescheduleDelay, Jitter: 1},
		"pointer":        &Exponential{Base: time.Second},
		"Base equal Max": Exponential{Base: time.Minute, Max: time.Minute},
		"custom":         fixedBackoff(time.Second),
	} {
		r, err := Config{Backoff: b}.Resolve()
		if err != nil || r.Backoff != b {
			t.Errorf("%s: Resolve = %+v, %v; want the Backoff kept", name, r.Backoff, err)
		}
	}
}

// fixedBackoff waits itself, whatever the attempt.
type fixedBackoff time.Duration

func (f fixedBackoff) Delay(int, time.Duration) time.Duration { return time.Duration(f) }

// backoffTask is a task whose Config and NextRetry come from its payload.
type backoffTask struct {
	Wait time.Duration
}

func (backoffTask) Handle(context.Context) (int, error) { return 0, nil }

type expTask struct{ backoffTask }

func (expTask) Config() Config {
	return Config{Backoff: Exponential{Max: time.Hour}}
}

type customTask struct{ backoffTask }

func (customTask) Config() Config {
	return Config{Backoff: fixedBackoff(-time.Minute)}
}

type schedTask struct{ backoffTask }

func (schedTask) Config() Config { return Config{Backoff: Exponential{Base: time.Hour}} }

func (t schedTask) NextRetry(attempt int, err error) time.Duration {
	return t.Wait + time.Duration(attempt)*time.Second
}

func prepare(t *testing.T, proto Task[int], payload string, attempt int) *Execution {
	t.Helper()
	reg := NewRegistry()
	if err := Register(reg, proto); err != nil {
		t.Fatal(err)
	}
	kind, _ := kindOf(proto)
	x, err := reg.Prepare(kind, []byte(payload), Metadata{Attempt: attempt - 1})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestExecutionRetryDelay(t *testing.T) {
	boom := errors.New("boom")
	for name, c := range map[string]struct {
		proto   Task[int]
		payload string
		attempt int // Job.Attempt: 1 on the first
		base    time.Duration
		want    time.Duration
	}{
		"fixed delay":                   {backoffTask{}, `{}`, 3, 90 * time.Second, 90 * time.Second},
		"fixed delay is never cut":      {backoffTask{}, `{}`, 1, 2 * MaxRescheduleDelay, 2 * MaxRescheduleDelay},
		"exponential from the job's":    {expTask{}, `{}`, 3, 10 * time.Second, 40 * time.Second},
		"exponential capped":            {expTask{}, `{}`, 200, 10 * time.Second, time.Hour},
		"custom backoff below zero":     {customTask{}, `{}`, 1, time.Minute, 0},
		"NextRetry wins over Backoff":   {schedTask{}, `{"Wait":5000000000}`, 3, time.Minute, 7 * time.Second},
		"NextRetry below zero is now":   {schedTask{}, `{"Wait":-50000000000}`, 1, time.Minute, 0},
		"NextRetry huge is cut":         {schedTask{}, fmt.Sprintf(`{"Wait":%d}`, int64(math.MaxInt64-10e9)), 1, time.Minute, MaxRescheduleDelay},
		"attempt 0 claimed (defensive)": {schedTask{}, `{"Wait":1}`, 0, time.Minute, 1},
	} {
		x := prepare(t, c.proto, c.payload, c.attempt)
		j := &Job{ID: uuid.New(), Attempt: c.attempt, MaxRetries: 1000, RetryDelay: c.base}
		if got := x.RetryDelay(j, boom); got != c.want {
			t.Errorf("%s: RetryDelay = %v, want %v", name, got, c.want)
		}
	}
}

func TestNextOutcomeSnoozesWithoutSpendingTheAttempt(t *testing.T) {
	boom := errors.New("boom")
	withRetries := &Job{ID: uuid.New(), Token: 4, Attempt: 1, MaxRetries: 3, RetryDelay: time.Minute}
	lastAttempt := &Job{ID: uuid.New(), Token: 9, Attempt: 1, MaxRetries: 0, RetryDelay: time.Minute}
	for name, c := range map[string]struct {
		job   *Job
		err   error
		state JobState
		delay time.Duration
	}{
		"snooze":                        {withRetries, Snooze(5 * time.Minute), StateScheduled, 5 * time.Minute},
		"wrapped snooze":                {withRetries, fmt.Errorf("rate limited: %w", Snooze(time.Second)), StateScheduled, time.Second},
		"joined with another error":     {withRetries, errors.Join(boom, Snooze(time.Second)), StateScheduled, time.Second},
		"snooze inside Permanent":       {withRetries, Permanent(Snooze(time.Second)), StateScheduled, time.Second},
		"snooze on the last attempt":    {lastAttempt, Snooze(time.Second), StateScheduled, time.Second},
		"snooze after a timeout":        {lastAttempt, fmt.Errorf("%w after 1s: %w", ErrTimeout, Snooze(time.Second)), StateScheduled, time.Second},
		"Snooze(0) is available now":    {withRetries, Snooze(0), StateAvailable, 0},
		"negative is available now":     {lastAttempt, Snooze(-time.Hour), StateAvailable, 0},
		"huge is cut":                   {withRetries, Snooze(time.Duration(math.MaxInt64)), StateScheduled, MaxRescheduleDelay},
		"typed nil SnoozeError":         {withRetries, (*SnoozeError)(nil), StateAvailable, 0},
		"cancel beats snooze":           {withRetries, Cancel(Snooze(time.Second)), StateCancelled, 0},
		"a retry without snooze":        {withRetries, boom, StateRetryable, 42 * time.Second},
		"negative retry delay is now":   {withRetries, errNegative, StateRetryable, 0},
		"no retries left, no snooze":    {lastAttempt, boom, StateFailed, 0},
		"panicking Unwrap is no snooze": {lastAttempt, panickyUnwrap{}, StateFailed, 0},
		"the policy says no, no snooze": {withRetries, errNoRetry, StateFailed, 0},
		"snooze beats the policy":       {withRetries, fmt.Errorf("%w %w", errNoRetry, Snooze(time.Second)), StateScheduled, time.Second},
	} {
		asked := 0
		policy := func(err error) (bool, time.Duration) {
			asked++
			switch {
			case errors.Is(err, errNoRetry):
				return false, 0
			case errors.Is(err, errNegative):
				return true, -time.Second
			}
			return true, 42 * time.Second
		}
		o := NextOutcome(c.job, nil, c.err, policy)
		if o.State != c.state || o.Delay != c.delay || o.ID != c.job.ID || o.Token != c.job.Token {
			t.Errorf("%s: %+v, want %s after %v", name, o, c.state, c.delay)
		}
		if err := o.Check(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		snoozed := o.State == StateScheduled || o.State == StateAvailable
		if snoozed && (o.Counts() || o.Error != "" || o.Finishes()) {
			t.Errorf("%s: a snooze that counts, finishes or adds to the history: %+v", name, o)
		}
		if wantAsked := c.state == StateRetryable || c.err == errNoRetry; (asked == 1) != wantAsked || asked > 1 {
			t.Errorf("%s: the retry policy was asked %d times, want asked=%v", name, asked, wantAsked)
		}
	}
}

var (
	errNoRetry  = errors.New("not worth retrying")
	errNegative = errors.New("retry in minus one second")
)

type panickyUnwrap struct{}

func (panickyUnwrap) Error() string { return "unwrap panics" }
func (panickyUnwrap) Unwrap() error { panic("no") }

func TestNextOutcomeWithoutPolicy(t *testing.T) {
	j := &Job{ID: uuid.New(), Attempt: 1, MaxRetries: 1, RetryDelay: 3 * time.Second}
	if o := NextOutcome(j, nil, errors.New("boom"), nil); o.State != StateRetryable || o.Delay != 3*time.Second {
		t.Errorf("nil policy, plain error: %+v, want retryable after the job's retry delay", o)
	}
	if o := NextOutcome(j, nil, Permanent(errors.New("bad")), nil); o.State != StateFailed {
		t.Errorf("nil policy, permanent error: %+v, want failed", o)
	}
}

func TestSnoozeError(t *testing.T) {
	if got := Snooze(90 * time.Second).Error(); got != "job snoozed for 1m30s" {
		t.Errorf("Snooze(90s).Error() = %q", got)
	}
	if got := (*SnoozeError)(nil).Error(); got != "job snoozed" {
		t.Errorf("nil SnoozeError's text = %q", got)
	}
	if !IsSnooze(fmt.Errorf("x: %w", Snooze(time.Second))) || IsSnooze(errors.New("x")) || IsSnooze(nil) || IsSnooze(panickyUnwrap{}) {
		t.Error("IsSnooze answers wrong")
	}
	if IsPermanent(Snooze(time.Second)) || IsCancel(Snooze(time.Second)) {
		t.Error("a snooze is taken for a permanent error or a cancel")
	}
}
