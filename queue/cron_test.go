package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

func mustTiming(t *testing.T, s queue.Schedule) *queue.Timing {
	t.Helper()
	tm, err := s.Timing()
	if err != nil {
		t.Fatalf("Timing(%+v): %v", s, err)
	}
	return tm
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("this machine has no zone %s: %v", name, err)
	}
	return loc
}

// ticks returns the n ticks after from.
func ticks(tm *queue.Timing, from time.Time, n int) []time.Time {
	var out []time.Time
	for range n {
		from = tm.Next(from)
		out = append(out, from)
	}
	return out
}

// TestScheduleNextDST: a cron expression is read in its zone's wall-clock
// time; across daylight saving time a daily job keeps its local hour, runs
// once on the night clocks go back and once (at the end of the gap) on the
// night they go forward.
func TestScheduleNextDST(t *testing.T) {
	t.Parallel()
	berlin := mustZone(t, "Europe/Berlin")
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	for _, c := range []struct {
		name string
		s    queue.Schedule
		from string
		want []string // UTC
	}{{
		// 09:00 in New York: 14:00 UTC in winter, 13:00 UTC in summer; the
		// day of the change is 23 hours long.
		name: "daily across spring forward keeps the local hour",
		s:    queue.Schedule{Name: "x", Cron: "0 9 * * *", TimeZone: "America/New_York"},
		from: "2025-03-07T15:00:00Z",
		want: []string{"2025-03-08T14:00:00Z", "2025-03-09T13:00:00Z", "2025-03-10T13:00:00Z"},
	}, {
		name: "daily in the skipped hour runs at the end of the gap",
		s:    queue.Schedule{Name: "x", Cron: "30 2 * * *", TimeZone: "Europe/Berlin"},
		from: "2025-03-28T12:00:00Z",
		// 02:30 CET = 01:30Z; on 30 March 02:30 does not exist: 03:00 CEST = 01:00Z; then 02:30 CEST = 00:30Z.
		want: []string{"2025-03-29T01:30:00Z", "2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z"},
	}, {
		name: "daily in the repeated hour runs once, at the first occurrence",
		s:    queue.Schedule{Name: "x", Cron: "30 2 * * *", TimeZone: "Europe/Berlin"},
		from: "2025-10-24T12:00:00Z",
		// 02:30 CEST = 00:30Z; on 26 October 02:30 comes at 00:30Z (CEST) and 01:30Z (CET): only the first.
		want: []string{"2025-10-25T00:30:00Z", "2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"},
	}, {
		name: "hourly through the repeated hour: each wall-clock hour once",
		s:    queue.Schedule{Name: "x", Cron: "0 * * * *", TimeZone: "America/New_York"},
		from: "2025-11-02T04:30:00Z", // 00:30 EDT
		// 01:00 EDT (05Z), [01:00 EST = 06Z is the same reading: passed over], 02:00 EST (07Z), 03:00 EST (08Z).
		want: []string{"2025-11-02T05:00:00Z", "2025-11-02T07:00:00Z", "2025-11-02T08:00:00Z"},
	}, {
		name: "every quarter hour through the gap: the skipped readings run once at its end",
		s:    queue.Schedule{Name: "x", Cron: "*/15 * * * *", TimeZone: "Europe/Berlin"},
		from: "2025-03-30T00:40:00Z", // 01:40 CET
		want: []string{"2025-03-30T00:45:00Z", "2025-03-30T01:00:00Z", "2025-03-30T01:15:00Z"},
	}, {
		name: "every second through the repeated hour: an hour of readings passed over",
		s:    queue.Schedule{Name: "x", Cron: "* * * * * *", TimeZone: "America/New_York"},
		from: "2025-11-02T05:59:58Z", // 01:59:58 EDT
		want: []string{"2025-11-02T05:59:59Z", "2025-11-02T07:00:00Z", "2025-11-02T07:00:01Z"},
	}, {
		name: "a half-hour shift (Lord Howe Island)",
		s:    queue.Schedule{Name: "x", Cron: "15 2 * * *", TimeZone: "Australia/Lord_Howe"},
		from: "2025-10-03T12:00:00Z",
		// 02:15 +1030 = 15:45Z the day before; on 5 October 02:00-02:30 is skipped: 02:30 +11 = 15:30Z.
		want: []string{"2025-10-03T15:45:00Z", "2025-10-04T15:30:00Z", "2025-10-05T15:15:00Z"},
	}, {
		name: "six fields count seconds",
		s:    queue.Schedule{Name: "x", Cron: "*/20 * * * * *"},
		from: "2025-01-01T00:00:05Z",
		want: []string{"2025-01-01T00:00:20Z", "2025-01-01T00:00:40Z", "2025-01-01T00:01:00Z"},
	}, {
		name: "an interval ignores the zone",
		s:    queue.Schedule{Name: "x", Every: 90 * time.Minute, TimeZone: "Europe/Berlin"},
		from: "2025-03-30T00:00:00Z",
		want: []string{"2025-03-30T01:30:00Z", "2025-03-30T03:00:00Z", "2025-03-30T04:30:00Z"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			got := ticks(mustTiming(t, c.s), utc(c.from), len(c.want))
			for i, w := range c.want {
				if !got[i].Equal(utc(w)) {
					t.Errorf("tick %d = %s (%s); want %s", i, got[i].UTC().Format(time.RFC3339), got[i].In(berlin).Format("15:04 MST"), w)
				}
			}
		})
	}
}

// TestSchedulePlan: what a firer does at a given time with a schedule's
// stored next tick, per policy.
func TestSchedulePlan(t *testing.T) {
	t.Parallel()
	base := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	hourly := mustTiming(t, queue.Schedule{Name: "h", Cron: "0 * * * *"})
	every := mustTiming(t, queue.Schedule{Name: "e", Every: time.Hour})
	for _, tm := range []struct {
		name string
		t    *queue.Timing
	}{{"cron", hourly}, {"every", every}} {
		t.Run(tm.name, func(t *testing.T) {
			plan := func(next, now time.Time, p queue.MissedPolicy) queue.TickPlan {
				t.Helper()
				pl, err := tm.t.Plan(next, now, p, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				return pl
			}
			// No tick yet: the first after now (an interval counts from
			// now), nothing due.
			first := base.Add(time.Hour)
			if tm.name == "every" {
				first = base.Add(70 * time.Minute)
			}
			if p := plan(time.Time{}, base.Add(10*time.Minute), queue.MissedRunOnce); p.Jobs() != 0 || !p.Next.Equal(first) {
				t.Errorf("no tick yet: %+v; want next %s", p, first)
			}
			// Not due.
			if p := plan(base, base.Add(-time.Second), queue.MissedSkip); p.Jobs() != 0 || !p.Next.Equal(base) {
				t.Errorf("not due: %+v", p)
			}
			// On time (late by less than Grace): one job under both policies.
			for _, pol := range []queue.MissedPolicy{queue.MissedSkip, queue.MissedRunOnce} {
				p := plan(base, base.Add(30*time.Second), pol)
				if p.Jobs() != 1 || p.Missed || len(p.Ticks) != 1 || !p.Ticks[0].Equal(base) || !p.Next.Equal(base.Add(time.Hour)) {
					t.Errorf("%s on time: %+v", pol, p)
				}
			}
			// Five hours of downtime, back 30 minutes after a tick: five
			// ticks missed, none on time.
			now := base.Add(5*time.Hour + 30*time.Minute)
			if p := plan(base, now, queue.MissedSkip); p.Jobs() != 0 || !p.Missed || !p.Next.Equal(base.Add(6*time.Hour)) {
				t.Errorf("skip after downtime: %+v", p)
			}
			if p := plan(base, now, queue.MissedRunOnce); p.Jobs() != 1 || !p.RunMissed || len(p.Ticks) != 0 || !p.Next.Equal(base.Add(6*time.Hour)) {
				t.Errorf("run_once after downtime: %+v", p)
			}
			// Back 20 s after a tick: the missed ones follow the policy,
			// the one on time runs.
			now = base.Add(5*time.Hour + 20*time.Second)
			if p := plan(base, now, queue.MissedSkip); p.Jobs() != 1 || !p.Missed || len(p.Ticks) != 1 || !p.Ticks[0].Equal(base.Add(5*time.Hour)) {
				t.Errorf("skip, latest on time: %+v", p)
			}
			if p := plan(base, now, queue.MissedRunOnce); p.Jobs() != 2 || !p.RunMissed || len(p.Ticks) != 1 {
				t.Errorf("run_once, latest on time: %+v", p)
			}
		})
	}
	// Several ticks within Grace each run: a firer that comes late by a few
	// ticks of a fast schedule loses none.
	fast := mustTiming(t, queue.Schedule{Name: "f", Every: time.Second})
	p, err := fast.Plan(base, base.Add(2500*time.Millisecond), queue.MissedSkip, time.Minute)
	if err != nil || len(p.Ticks) != 3 || p.Missed || !p.Next.Equal(base.Add(3*time.Second)) {
		t.Errorf("fast schedule 2.5 s late: %+v, %v; want 3 ticks", p, err)
	}
	fastCron := mustTiming(t, queue.Schedule{Name: "f", Cron: "* * * * * *"})
	p, err = fastCron.Plan(base, base.Add(2500*time.Millisecond), queue.MissedSkip, time.Minute)
	if err != nil || len(p.Ticks) != 3 || p.Missed || !p.Next.Equal(base.Add(3*time.Second)) {
		t.Errorf("per-second cron 2.5 s late: %+v, %v; want 3 ticks", p, err)
	}
	// At most 100 ticks per pass; older ones count as missed.
	p, err = fastCron.Plan(base, base.Add(150*time.Second), queue.MissedRunOnce, 10*time.Minute)
	if err != nil || len(p.Ticks) != 100 || !p.RunMissed || !p.Ticks[99].Equal(base.Add(150*time.Second)) {
		t.Errorf("150 due ticks: %d ticks, missed %v, %v", len(p.Ticks), p.RunMissed, err)
	}
}

// TestScheduleBadInput: every field out of range is refused, naming it.
func TestScheduleBadInput(t *testing.T) {
	t.Parallel()
	ok := queue.Schedule{Name: "n", Cron: "0 3 * * *", Kind: "Report"}
	if err := ok.Check(); err != nil {
		t.Fatalf("a good schedule: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*queue.Schedule)
		want string
	}{
		{"empty name", func(s *queue.Schedule) { s.Name = "" }, "name is empty"},
		{"name with a space", func(s *queue.Schedule) { s.Name = "nightly report" }, "whitespace"},
		{"long name", func(s *queue.Schedule) { s.Name = strings.Repeat("n", 129) }, "the limit is 128"},
		{"neither", func(s *queue.Schedule) { s.Cron = "" }, "neither Cron nor Every"},
		{"both", func(s *queue.Schedule) { s.Every = time.Hour }, "both Cron"},
		{"bad expression", func(s *queue.Schedule) { s.Cron = "61 * * * *" }, `Cron "61 * * * *" does not parse`},
		{"three fields", func(s *queue.Schedule) { s.Cron = "* * *" }, "does not parse"},
		{"no date matches", func(s *queue.Schedule) { s.Cron = "0 0 30 2 *" }, "never matches"},
		{"zone in the expression", func(s *queue.Schedule) { s.Cron = "TZ=UTC" }, "put the zone in TimeZone"},
		{"@every", func(s *queue.Schedule) { s.Cron = "@every 1h" }, "set Every instead"},
		{"unknown zone", func(s *queue.Schedule) { s.TimeZone = "Mars/Olympus_Mons" }, `TimeZone "Mars/Olympus_Mons"`},
		{"local zone", func(s *queue.Schedule) { s.TimeZone = "Local" }, `TimeZone "Local"`},
		{"zero interval", func(s *queue.Schedule) { s.Cron, s.Every = "", 0 }, "neither Cron nor Every"},
		{"negative interval", func(s *queue.Schedule) { s.Cron, s.Every = "", -time.Minute }, "Every is -1m0s"},
		{"short interval", func(s *queue.Schedule) { s.Cron, s.Every = "", 10*time.Millisecond }, "at least 1s"},
		{"unknown policy", func(s *queue.Schedule) { s.Missed = "catch_up" }, `Missed is "catch_up"`},
		{"negative grace", func(s *queue.Schedule) { s.Grace = -time.Second }, "Grace is -1s"},
		{"long grace", func(s *queue.Schedule) { s.Grace = 48 * time.Hour }, "Grace is 48h0m0s"},
		{"no kind", func(s *queue.Schedule) { s.Kind = "" }, "Kind is empty"},
		{"bad queue", func(s *queue.Schedule) { s.Queue = "a b" }, "whitespace"},
		{"bad payload", func(s *queue.Schedule) { s.Payload = json.RawMessage(`{`) }, "not valid JSON"},
		{"NUL in payload", func(s *queue.Schedule) { s.Payload = json.RawMessage(`{"a":"\u0000"}`) }, "NUL"},
		{"retries", func(s *queue.Schedule) { s.MaxRetries = -1 }, "MaxRetries is -1"},
		{"retry delay", func(s *queue.Schedule) { s.RetryDelay = -1 }, "RetryDelay"},
		{"timeout", func(s *queue.Schedule) { s.Timeout = -1 }, "Timeout"},
	} {
		s := ok
		c.edit(&s)
		err := s.Check()
		if !errors.Is(err, queue.ErrInvalidSchedule) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrInvalidSchedule saying %q", c.name, err, c.want)
		}
	}
	if _, err := queue.ParseMissedPolicy("run-once"); err != nil {
		t.Errorf("ParseMissedPolicy(run-once): %v", err)
	}
	if _, err := queue.ParseMissedPolicy("later"); !errors.Is(err, queue.ErrInvalidSchedule) {
		t.Errorf("ParseMissedPolicy(later): %v", err)
	}
}

// nightlyReport is a task for the client's Schedule.
type nightlyReport struct {
	Format string
}

func (*nightlyReport) Config() queue.Config {
	return queue.Config{Queue: "reports", MaxRetries: queue.NoRetries, Timeout: time.Minute}
}

func (*nightlyReport) Handle(context.Context) (string, error) { return "", nil }

// schedulingAdapter is an adapter that keeps the schedules it is given.
type schedulingAdapter struct {
	queue.Adapter
	queue.Scheduler
	got []queue.Schedule
}

func (a *schedulingAdapter) Name() string { return "mem" }

func (a *schedulingAdapter) UpsertSchedule(_ context.Context, s queue.Schedule) error {
	a.got = append(a.got, s)
	return nil
}

// plainAdapter keeps no schedules.
type plainAdapter struct{ queue.Adapter }

func (plainAdapter) Name() string { return "plain" }

// TestClientSchedule: the client builds a schedule's job from a task as
// Dispatch builds a job, and says when the backend keeps no schedules.
func TestClientSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := &schedulingAdapter{}
	c, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Schedule(ctx, queue.Schedule{Name: "nightly", Cron: "0 3 * * *"}, &nightlyReport{Format: "pdf"}, queue.WithPriority(4))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.got) != 1 {
		t.Fatalf("upserted %d schedules", len(a.got))
	}
	s := a.got[0]
	if s.Kind != "nightlyReport" || s.Queue != "reports" || string(s.Payload) != `{"Format":"pdf"}` || s.Priority != 4 ||
		s.MaxRetries != 0 || s.Timeout != time.Minute || s.Cron != "0 3 * * *" {
		t.Errorf("schedule = %+v", s)
	}
	if err := c.Schedule(ctx, queue.Schedule{Name: "d"}, &nightlyReport{}, queue.Delay(time.Minute)); !errors.Is(err, queue.ErrInvalidSchedule) {
		t.Errorf("Schedule with Delay: %v; want ErrInvalidSchedule", err)
	}
	if sc, err := c.Scheduler(); err != nil || sc == nil {
		t.Errorf("Scheduler() = %v, %v", sc, err)
	}

	plain, err := queue.NewClient(plainAdapter{})
	if err != nil {
		t.Fatal(err)
	}
	err = plain.Schedule(ctx, queue.Schedule{Name: "n", Every: time.Hour}, &nightlyReport{})
	if !errors.Is(err, queue.ErrSchedulesUnsupported) || !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "plain") {
		t.Errorf("Schedule on a backend without schedules: %v", err)
	}
	if _, err := plain.Scheduler(); !errors.Is(err, queue.ErrSchedulesUnsupported) {
		t.Errorf("Scheduler() on a backend without schedules: %v", err)
	}
}
