package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
)

// Periodic jobs. A Schedule is a row in the backend: a cron expression or
// a fixed interval, a time zone, and the job each tick dispatches. Workers
// fire due schedules (see ScheduleFirer): a firer claims a due schedule, and
// stores its job and its next tick in one transaction, so each tick
// dispatches one job however many workers fire at once, and a firer that
// dies half-way leaves the tick to the next one. The tick arithmetic lives
// here, in one copy, so every backend computes the same ticks.

// Errors of the schedule API, for errors.Is.
var (
	// ErrInvalidSchedule means a schedule's name, timing, policy or job is
	// out of range; the error names the field. Nothing was stored.
	ErrInvalidSchedule = errors.New("tasq: invalid schedule")
	// ErrScheduleNotFound means no schedule has the given name.
	ErrScheduleNotFound = errors.New("tasq: schedule not found")
	// ErrScheduleExists means AddSchedule was given a name already taken;
	// UpsertSchedule replaces the schedule instead.
	ErrScheduleExists = errors.New("tasq: a schedule with this name exists")
	// ErrSchedulesUnsupported means the backend keeps no schedules (it is no
	// Scheduler). It matches errors.ErrUnsupported.
	ErrSchedulesUnsupported = fmt.Errorf("tasq: the backend keeps no schedules (periodic jobs need postgres): %w", errors.ErrUnsupported)
)

// MissedPolicy says what a schedule does with missed ticks: ticks more
// than the schedule's Grace late by the time a firer gets to them, because
// no worker was running (downtime, a long deploy) or the database could not
// be reached. A tick fired within Grace is on time and dispatches its job
// whatever the policy; a schedule never dispatches a backlog of missed
// ticks.
type MissedPolicy string

// The missed-tick policies.
const (
	// MissedRunOnce dispatches one job for all the missed ticks of a
	// schedule, as soon as a firer runs again. The default: a run is never
	// silently lost.
	MissedRunOnce MissedPolicy = "run_once"
	// MissedSkip drops missed ticks: after downtime the schedule goes on
	// with its next tick, as if the missed ones never came.
	MissedSkip MissedPolicy = "skip"
)

// ParseMissedPolicy checks that s names a missed-tick policy. "run-once"
// is taken for run_once.
func ParseMissedPolicy(s string) (MissedPolicy, error) {
	switch MissedPolicy(strings.ReplaceAll(s, "-", "_")) {
	case MissedRunOnce:
		return MissedRunOnce, nil
	case MissedSkip:
		return MissedSkip, nil
	}
	return "", fmt.Errorf("%w: missed-tick policy %q is unknown; use %q or %q", ErrInvalidSchedule, s, MissedRunOnce, MissedSkip)
}

// Limits and defaults of schedules.
const (
	// MaxScheduleNameLength is the longest schedule name accepted, in bytes.
	MaxScheduleNameLength = 128
	// MinScheduleEvery is the shortest interval between ticks: cron
	// expressions count whole seconds too.
	MinScheduleEvery = time.Second
	// DefaultScheduleGrace is how late a tick may fire and still count as
	// on time, when a schedule sets no Grace.
	DefaultScheduleGrace = time.Minute
	// MaxScheduleGrace is the longest Grace.
	MaxScheduleGrace = 24 * time.Hour
	// maxScheduleDuration is the longest Every, Grace, RetryDelay or Timeout:
	// whole milliseconds that fit a time.Duration, as the columns hold.
	maxScheduleDuration = 9223372036854 * time.Millisecond
)

// Schedule describes a periodic job: when it ticks, and the job each tick
// dispatches. Set exactly one of Cron and Every.
//
// The job fields (Kind to Timeout) are stored as given, like NewJob's:
// zero MaxRetries is no retries, zero Timeout none. Client.Schedule fills
// them from a task value and its Config, as Dispatch does.
type Schedule struct {
	// Name identifies the schedule: at most MaxScheduleNameLength bytes, no
	// whitespace or control characters. Names are case-sensitive.
	Name string
	// Cron is a cron expression: five fields (minute hour day-of-month
	// month day-of-week), or six with a leading seconds field, or one of
	// @yearly, @monthly, @weekly, @daily, @hourly. It is read in TimeZone's
	// wall-clock time (see Next for daylight saving time).
	Cron string
	// Every is a fixed interval between ticks, at least MinScheduleEvery,
	// counted from the first tick (one Every after the schedule was made),
	// so ticks do not drift. Time zones do not affect it.
	Every time.Duration
	// TimeZone is the IANA zone Cron is read in, e.g. "Europe/Berlin".
	// Default "UTC".
	TimeZone string
	// Missed is the missed-tick policy. Default MissedRunOnce.
	Missed MissedPolicy
	// Grace is how late a tick may be fired and still count as on time;
	// later ones are missed and follow Missed. At most MaxScheduleGrace.
	// Default DefaultScheduleGrace.
	Grace time.Duration

	// Kind is the task kind each tick's job runs.
	Kind string
	// Queue is the job's queue. Default DefaultQueue.
	Queue string
	// Payload is the job's payload, a JSON value (usually an object).
	// Default {}.
	Payload json.RawMessage
	// Priority, MaxRetries, RetryDelay and Timeout are the job's, as in
	// NewJob.
	Priority   int16
	MaxRetries int
	RetryDelay time.Duration
	Timeout    time.Duration
}

// ScheduleInfo is a stored schedule with its state.
type ScheduleInfo struct {
	Schedule
	// Paused says that the schedule does not tick: ticks that come while
	// it is paused are not missed ticks, they never happen (see Scheduler).
	Paused bool
	// NextRunAt is the schedule's next tick; zero until a firer or a resume
	// has computed it (a schedule inserted with SQL, or changed there).
	NextRunAt time.Time
	// LastRunAt is when the schedule last dispatched a job (a tick or a
	// trigger), and LastJobID that job; zero when it never did.
	LastRunAt time.Time
	LastJobID uuid.UUID
	// Error says why firers cannot compute the schedule's ticks (a cron
	// expression or time zone stored with SQL that does not parse). Such a
	// schedule does not tick until it is changed or resumed.
	Error     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Scheduler is the capability of backends that keep schedules: periodic
// jobs that workers dispatch on every tick. The schedules live in the
// backend, so they survive restarts and deploys, and can be changed at run
// time from any process (and, on postgres, with SQL and `tasq cron`).
//
// Pause and resume: a paused schedule does not tick. Resume computes the
// next tick after the moment of the resume; the ticks that came while it
// was paused are not run, whatever its missed-tick policy (they were not
// missed, they were paused). Resume also clears Error, so that firers try a
// schedule again.
//
// Trigger dispatches the schedule's job at once, paused or not, and leaves
// the regular ticks as they were: a trigger just before a tick is followed
// by that tick's job as well.
type Scheduler interface {
	// AddSchedule stores a new schedule, or returns ErrScheduleExists when
	// its name is taken.
	AddSchedule(ctx context.Context, s Schedule) error
	// UpsertSchedule stores s, replacing the schedule of the same name. The
	// next tick is kept when the timing (Cron, Every, TimeZone) is
	// unchanged, so an application may upsert its schedules on every start
	// without moving a tick; a changed timing ticks anew from now. The
	// paused state is not changed: an operator's pause outlives deploys.
	UpsertSchedule(ctx context.Context, s Schedule) error
	// RemoveSchedule deletes the schedule. Jobs it dispatched stay.
	RemoveSchedule(ctx context.Context, name string) error
	// PauseSchedule stops the schedule's ticks until ResumeSchedule.
	PauseSchedule(ctx context.Context, name string) error
	// ResumeSchedule lets a paused schedule tick again from its next tick
	// after now; on a schedule that is not paused it changes nothing but
	// Error.
	ResumeSchedule(ctx context.Context, name string) error
	// TriggerSchedule dispatches the schedule's job now and returns its ID.
	TriggerSchedule(ctx context.Context, name string) (uuid.UUID, error)
	// GetSchedule returns one schedule, or ErrScheduleNotFound.
	GetSchedule(ctx context.Context, name string) (*ScheduleInfo, error)
	// ListSchedules returns every schedule, by name.
	ListSchedules(ctx context.Context) ([]*ScheduleInfo, error)
}

// FiredSchedule is what a firer did with one due schedule.
type FiredSchedule struct {
	Name string
	// JobIDs are the jobs dispatched: one per tick on time, and one for the
	// missed ticks under MissedRunOnce. None when the schedule had no tick
	// yet (it was just given one), its ticks were missed under MissedSkip,
	// or Err.
	JobIDs []uuid.UUID
	// Ticks are the due ticks that were on time, and Missed says that due
	// ticks were more than Grace late.
	Ticks  []time.Time
	Missed bool
	// Next is the schedule's next tick now.
	Next time.Time
	// Err, when set, says why the schedule's ticks cannot be computed; the
	// backend stores it as the schedule's Error and leaves the schedule
	// alone until it is changed or resumed.
	Err error
}

// ScheduleFirer is the capability of backends whose schedules workers fire.
// Firing is safe to run from any number of workers at once: each due
// schedule is claimed by one firer, which stores its job and its next tick
// in one transaction.
type ScheduleFirer interface {
	// FireSchedules dispatches the jobs of the schedules due at now and
	// moves each to its next tick after now, as its missed-tick policy
	// says. A zero now means the backend's clock; tests pass their own.
	FireSchedules(ctx context.Context, now time.Time) ([]FiredSchedule, error)
}

// ValidateScheduleName checks a schedule name: not empty, at most
// MaxScheduleNameLength bytes, no whitespace or control characters.
func ValidateScheduleName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the schedule name is empty; give it a name such as \"nightly-report\"", ErrInvalidSchedule)
	case len(name) > MaxScheduleNameLength:
		return fmt.Errorf("%w: schedule name %.20q... is %d bytes; the limit is %d", ErrInvalidSchedule, name, len(name), MaxScheduleNameLength)
	case strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return fmt.Errorf("%w: schedule name %q contains whitespace or control characters; use e.g. dashes instead", ErrInvalidSchedule, name)
	}
	return nil
}

// WithDefaults returns s with its defaults filled in: TimeZone "UTC",
// Missed MissedRunOnce, Grace DefaultScheduleGrace, Queue DefaultQueue,
// Payload {}.
func (s Schedule) WithDefaults() Schedule {
	if s.TimeZone == "" {
		s.TimeZone = "UTC"
	}
	if s.Missed == "" {
		s.Missed = MissedRunOnce
	}
	if s.Grace == 0 {
		s.Grace = DefaultScheduleGrace
	}
	if s.Queue == "" {
		s.Queue = DefaultQueue
	}
	if len(s.Payload) == 0 {
		s.Payload = json.RawMessage(`{}`)
	}
	return s
}

// Check validates s (after WithDefaults) and returns an error wrapping
// ErrInvalidSchedule that names the field at fault.
func (s Schedule) Check() error {
	if err := ValidateScheduleName(s.Name); err != nil {
		return err
	}
	s = s.WithDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schedule %q: %s", ErrInvalidSchedule, s.Name, fmt.Sprintf(format, args...))
	}
	if _, err := s.Timing(); err != nil {
		return err
	}
	switch s.Missed {
	case MissedRunOnce, MissedSkip:
	default:
		return bad("Missed is %q; use queue.MissedRunOnce (%q) or queue.MissedSkip (%q)", s.Missed, MissedRunOnce, MissedSkip)
	}
	if s.Grace < 0 || s.Grace > MaxScheduleGrace {
		return bad("Grace is %v; use a positive duration up to %v, or 0 for the default (%v)", s.Grace, MaxScheduleGrace, DefaultScheduleGrace)
	}
	if s.Kind == "" {
		return bad("Kind is empty; give the task kind each tick runs (its Go type name or Kind())")
	}
	if err := ValidateQueueName(s.Queue); err != nil {
		return fmt.Errorf("%w: schedule %q: %w", ErrInvalidSchedule, s.Name, err)
	}
	switch {
	case !json.Valid(s.Payload):
		return bad("Payload is not valid JSON")
	case nulEscape(s.Payload) >= 0:
		return bad("Payload holds a NUL character (\\u0000), which PostgreSQL cannot store")
	case s.MaxRetries < 0 || s.MaxRetries > MaxRetriesLimit:
		return bad("MaxRetries is %d; use 0 to %d", s.MaxRetries, MaxRetriesLimit)
	case s.RetryDelay < 0 || s.RetryDelay > maxScheduleDuration:
		return bad("RetryDelay is %v; it must not be negative", s.RetryDelay)
	case s.Timeout < 0 || s.Timeout > maxScheduleDuration:
		return bad("Timeout is %v; it must not be negative (0 is none)", s.Timeout)
	}
	return nil
}

// cronParser reads five fields, six with seconds first, and the
// descriptors (@daily, ...).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Timing is a schedule's parsed timing: its cron expression or interval in
// its time zone. It computes ticks; make one with Schedule.Timing.
type Timing struct {
	name  string        // the schedule's, for errors
	spec  cron.Schedule // the expression, evaluated on wall-clock times written in UTC
	every time.Duration
	loc   *time.Location
}

// Timing parses the schedule's Cron or Every and TimeZone. Its error wraps
// ErrInvalidSchedule and says what does not parse.
func (s Schedule) Timing() (*Timing, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schedule %q: %s", ErrInvalidSchedule, s.Name, fmt.Sprintf(format, args...))
	}
	zone := s.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	if strings.EqualFold(zone, "local") {
		return nil, bad("TimeZone %q is each machine's own zone, which may differ from worker to worker; name the zone, e.g. \"Europe/Berlin\" or \"UTC\"", zone)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, bad("TimeZone %q is not a time zone this machine knows (%v); use an IANA name such as \"Europe/Berlin\" or \"UTC\"", zone, err)
	}
	t := &Timing{name: s.Name, loc: loc}
	expr := strings.TrimSpace(s.Cron)
	switch {
	case expr != "" && s.Every != 0:
		return nil, bad("both Cron (%q) and Every (%v) are set; give one", s.Cron, s.Every)
	case expr == "" && s.Every == 0:
		return nil, bad("neither Cron nor Every is set; give a cron expression such as \"0 3 * * *\" or an interval")
	case s.Every != 0:
		if s.Every < MinScheduleEvery || s.Every > maxScheduleDuration {
			return nil, bad("Every is %v; use an interval of at least %v", s.Every, MinScheduleEvery)
		}
		if s.Every%time.Millisecond != 0 {
			return nil, bad("Every is %v; use whole milliseconds", s.Every)
		}
		t.every = s.Every
		return t, nil
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, bad("Cron %q names its time zone; put the zone in TimeZone and leave it out of the expression", s.Cron)
	case strings.HasPrefix(expr, "@every"):
		return nil, bad("Cron %q is an interval; set Every instead", s.Cron)
	}
	spec, err := cronParser.Parse(expr)
	if err != nil {
		return nil, bad("Cron %q does not parse: %v; use five fields (minute hour day-of-month month day-of-week), six with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly", s.Cron, err)
	}
	t.spec = spec
	// An expression no date matches (February 30) would never tick.
	if spec.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, bad("Cron %q never matches a date", s.Cron)
	}
	return t, nil
}

// Next returns the schedule's first tick after t, or the zero time when
// its expression has none. For Every it is t + Every (a stored schedule
// ticks from its first tick on; see Plan).
//
// A cron expression is read in the zone's wall-clock time, and each
// wall-clock time it matches ticks once: when clocks go back, a time in
// the repeated hour ticks at its first occurrence only; when they go
// forward, the times the gap skips tick once, at the first moment after it
// (a job at 02:30 runs at 03:00 that night), so a daily job never runs
// twice nor misses a day.
func (t *Timing) Next(after time.Time) time.Time {
	if t.every > 0 {
		return after.Add(t.every)
	}
	// The expression is evaluated on wall-clock readings written as UTC
	// times, which never skip or repeat; each reading becomes the instant it
	// names in the zone. Readings whose instant is not after `after` (the
	// repeated hour, the gap) are passed over.
	w := t.spec.Next(wallClock(after, t.loc))
	for range maxWallSteps {
		if w.IsZero() {
			return time.Time{}
		}
		if at := instantOf(w, t.loc); at.After(after) {
			return at
		}
		w = t.spec.Next(w)
	}
	return time.Time{}
}

// maxWallSteps bounds the readings Next passes over: an hour of seconds
// (a per-second expression in a repeated hour) and then some.
const maxWallSteps = 10000

// wallClock returns the wall-clock reading of t in loc, written as a UTC time.
func wallClock(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// instantOf returns the instant at which loc's clocks read w (a reading
// written as a UTC time): its first occurrence when the reading comes twice,
// and the end of the gap when clocks skip it.
func instantOf(w time.Time, loc *time.Location) time.Time {
	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	start, end := t.ZoneBounds()
	if got := wallClock(t, loc); !got.Equal(w) {
		// In a gap: time.Date moved the reading into one of the zones
		// around it; the gap ends where the later zone starts.
		if got.After(w) {
			return start
		}
		return end
	}
	// The same reading in the zone before this one, if it came then too.
	if !start.IsZero() {
		_, off := start.Add(-time.Nanosecond).Zone()
		earlier := w.Add(-time.Duration(off) * time.Second)
		if earlier.Before(start) && wallClock(earlier, loc).Equal(w) {
			return earlier.In(loc)
		}
	}
	return t
}

// maxTicksPerPass bounds the on-time ticks of one schedule that one pass of
// a firer dispatches; older ones count as missed.
const maxTicksPerPass = 100

// maxPlanSteps bounds the ticks Plan walks: a tick every second for
// MaxScheduleGrace, and then some.
const maxPlanSteps = 100000

// TickPlan is what a firer does with a due schedule: see Timing.Plan.
type TickPlan struct {
	// Ticks are the due ticks at most Grace old, oldest first: each
	// dispatches one job.
	Ticks []time.Time
	// Missed says that due ticks were more than Grace old, and RunMissed
	// that one job is dispatched for all of them (MissedRunOnce).
	Missed, RunMissed bool
	// Next is the schedule's next tick, after now.
	Next time.Time
}

// Jobs is the number of jobs the plan dispatches.
func (p TickPlan) Jobs() int {
	n := len(p.Ticks)
	if p.RunMissed {
		n++
	}
	return n
}

// Plan says what to do at now with a schedule whose stored next tick is
// next: zero when it has none yet, and then nothing is due and the first
// tick after now is the next one. The due ticks are next and the ticks
// after it up to now. Each due tick at most grace old dispatches one job
// (at most 100 per pass: older ones count as missed); the older ones are
// missed, and MissedRunOnce dispatches one job for all of them while
// MissedSkip drops them. Plan fails only when the expression has no tick
// after now.
func (t *Timing) Plan(next, now time.Time, missed MissedPolicy, grace time.Duration) (TickPlan, error) {
	var p TickPlan
	if grace <= 0 {
		grace = DefaultScheduleGrace
	}
	cutoff := now.Add(-grace) // ticks before it are missed
	switch {
	case next.IsZero():
		p.Next = t.Next(now)
	case next.After(now):
		p.Next = next // not due
	case t.every > 0:
		last := now.Sub(next) / t.every // the latest due tick is next + last*every
		first := time.Duration(0)       // the first on time
		if next.Before(cutoff) {
			first = (cutoff.Sub(next) + t.every - 1) / t.every
		}
		if last-first+1 > maxTicksPerPass {
			first = last - maxTicksPerPass + 1
		}
		for k := first; k <= last; k++ {
			p.Ticks = append(p.Ticks, next.Add(k*t.every))
		}
		p.Missed = first > 0
		p.Next = next.Add((last + 1) * t.every)
	default:
		// next itself, then the expression's ticks up to now; keep the
		// newest maxTicksPerPass of those on time.
		tick := next
		for steps := 0; !tick.IsZero() && !tick.After(now); steps++ {
			if steps > maxPlanSteps {
				return p, fmt.Errorf("%w: schedule %q: more than %d ticks are due within Grace", ErrInvalidSchedule, t.name, maxPlanSteps)
			}
			if tick.Before(cutoff) {
				p.Missed = true
			} else {
				if len(p.Ticks) == maxTicksPerPass {
					p.Ticks, p.Missed = p.Ticks[1:], true
				}
				p.Ticks = append(p.Ticks, tick)
			}
			if tick.Before(cutoff) {
				// Jump to the first tick at most grace old.
				tick = t.Next(cutoff.Add(-time.Nanosecond))
				continue
			}
			tick = t.Next(tick)
		}
		p.Next = t.Next(now)
	}
	p.RunMissed = p.Missed && missed != MissedSkip
	if p.Next.IsZero() {
		return p, fmt.Errorf("%w: schedule %q: the cron expression has no tick after %s", ErrInvalidSchedule, t.name, now.Format(time.RFC3339))
	}
	return p, nil
}

// Schedule stores a schedule that dispatches task on every tick of s: it
// fills the job fields of s (Kind to Timeout) from task and its Config, as
// Dispatch would, applies opts (OnQueue, RetryAfter, WithPriority; Delay
// has no meaning here and is refused), and upserts s (see
// Scheduler.UpsertSchedule) in the backend task's Config routes it to.
// Call it at start-up for each periodic job: an unchanged schedule keeps its
// next tick. It returns an error wrapping ErrSchedulesUnsupported when that
// backend keeps no schedules.
func (c *Client) Schedule(ctx context.Context, s Schedule, task any, opts ...DispatchOption) error {
	if c == nil {
		return ErrNoDefaultClient
	}
	var o dispatchOpts
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return err
		}
	}
	if o.delay != 0 {
		return fmt.Errorf("%w: schedule %q: queue.Delay has no meaning for a schedule; its ticks say when jobs run", ErrInvalidSchedule, s.Name)
	}
	job, a, err := c.build(task, &o)
	if err != nil {
		return err
	}
	s.Kind, s.Queue, s.Payload, s.Priority = job.Kind, job.Queue, job.Payload, job.Priority
	s.MaxRetries, s.RetryDelay, s.Timeout = job.MaxRetries, job.RetryDelay, job.Timeout
	sc, ok := a.(Scheduler)
	if !ok {
		return fmt.Errorf("schedule %q on driver %s: %w", s.Name, a.Name(), ErrSchedulesUnsupported)
	}
	return sc.UpsertSchedule(ctx, s)
}

// Scheduler returns the client's default adapter as a Scheduler, to list,
// pause, resume, trigger and remove schedules, or an error wrapping
// ErrSchedulesUnsupported.
func (c *Client) Scheduler() (Scheduler, error) {
	if c == nil {
		return nil, ErrNoDefaultClient
	}
	sc, ok := c.adapter.(Scheduler)
	if !ok {
		return nil, fmt.Errorf("driver %s: %w", c.adapter.Name(), ErrSchedulesUnsupported)
	}
	return sc, nil
}
