package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Tests of periodic jobs (migration 8, cron.go). Firing is driven with an
// explicit "now", so that hours of ticks, downtime and DST changes take
// milliseconds; t0 is a time the database's clock has not reached.

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// cronDB is a fresh database with an adapter and a connection for SQL.
type cronDB struct {
	dsn  string
	a    *postgres.Adapter
	conn *pgx.Conn
}

func newCronDB(t *testing.T) *cronDB {
	t.Helper()
	ctx := context.Background()
	dsn := testpg.NewDatabase(t)
	a, err := postgres.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &cronDB{dsn: dsn, a: a, conn: conn}
}

func (d *cronDB) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := d.conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// upsert stores s and puts its next tick at next.
func (d *cronDB) upsert(t *testing.T, s queue.Schedule, next time.Time) {
	t.Helper()
	if err := d.a.UpsertSchedule(context.Background(), s); err != nil {
		t.Fatalf("UpsertSchedule(%s): %v", s.Name, err)
	}
	if !next.IsZero() {
		d.exec(t, `UPDATE tasq_schedules SET next_run_at = $2 WHERE name = $1`, s.Name, next)
	}
}

func (d *cronDB) fire(t *testing.T, now time.Time) map[string]queue.FiredSchedule {
	t.Helper()
	fired, err := d.a.FireSchedules(context.Background(), now)
	if err != nil {
		t.Fatalf("FireSchedules(%s): %v", now.Format(time.RFC3339), err)
	}
	out := map[string]queue.FiredSchedule{}
	for _, f := range fired {
		if _, dup := out[f.Name]; dup {
			t.Fatalf("schedule %s fired twice in one call", f.Name)
		}
		out[f.Name] = f
	}
	return out
}

func (d *cronDB) get(t *testing.T, name string) *queue.ScheduleInfo {
	t.Helper()
	s, err := d.a.GetSchedule(context.Background(), name)
	if err != nil {
		t.Fatalf("GetSchedule(%s): %v", name, err)
	}
	return s
}

// jobs counts the jobs of each kind.
func (d *cronDB) jobs(t *testing.T) map[string]int {
	t.Helper()
	rows, err := d.conn.Query(context.Background(), `SELECT kind, count(*) FROM tasq_jobs GROUP BY kind`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (d *cronDB) dbNow(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	if err := d.conn.QueryRow(context.Background(), `SELECT now()`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

func hourly(name, kind string) queue.Schedule {
	return queue.Schedule{Name: name, Cron: "0 * * * *", Kind: kind}
}

// TestCronOneJobPerTickWithManyFirers: eight firers, each on its own pool,
// fire the same due schedules at once, again and again, for ten ticks:
// every schedule has exactly one job per tick.
func TestCronOneJobPerTickWithManyFirers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newCronDB(t)
	const firers, schedules, ticks, rounds = 8, 12, 10, 3
	for i := range schedules {
		s := queue.Schedule{Name: fmt.Sprintf("s%02d", i), Kind: fmt.Sprintf("K%02d", i)}
		if i%2 == 0 {
			s.Cron = "0 * * * *"
		} else {
			s.Every = time.Hour
		}
		d.upsert(t, s, t0)
	}
	ads := make([]*postgres.Adapter, firers)
	for i := range ads {
		a, err := postgres.New(ctx, withParam(t, d.dsn, "pool_max_conns", "2"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		ads[i] = a
	}
	for k := range ticks {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a firer that waits on another fails the test
		defer cancel()
		now := t0.Add(time.Duration(k)*time.Hour + 5*time.Second)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		reported := map[string]int{} // jobs the firers say they dispatched, per schedule
		errs := make(chan error, firers*rounds)
		for _, a := range ads {
			wg.Go(func() {
				<-start
				for r := range rounds {
					// Each firer's clock is a little off from the others'.
					fired, err := a.FireSchedules(ctx, now.Add(time.Duration(r)*time.Second))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for _, f := range fired {
						reported[f.Name] += len(f.JobIDs)
					}
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("tick %d: %v", k, err)
		}
		got := d.jobs(t)
		for i := range schedules {
			kind, name := fmt.Sprintf("K%02d", i), fmt.Sprintf("s%02d", i)
			if got[kind] != k+1 {
				t.Fatalf("after tick %d schedule %s has %d jobs; want %d", k, name, got[kind], k+1)
			}
			if reported[name] != 1 {
				t.Fatalf("tick %d: firers reported %d jobs of %s; want 1", k, reported[name], name)
			}
			s := d.get(t, name)
			if want := t0.Add(time.Duration(k+1) * time.Hour); !s.NextRunAt.Equal(want) {
				t.Fatalf("after tick %d schedule %s is due at %s; want %s", k, name, s.NextRunAt, want)
			}
		}
	}
	// Every schedule's last job is one of its jobs.
	var orphans int
	if err := d.conn.QueryRow(ctx, `SELECT count(*) FROM tasq_schedules s
		WHERE NOT EXISTS (SELECT FROM tasq_jobs j WHERE j.id = s.last_job_id AND j.kind = s.kind)`).Scan(&orphans); err != nil || orphans != 0 {
		t.Errorf("%d schedules whose last_job_id is not one of their jobs (%v)", orphans, err)
	}
}

// TestCronMissedTicks: after downtime, policy skip drops the ticks more than
// Grace late and run_once dispatches one job for them; a tick within Grace
// runs under both.
func TestCronMissedTicks(t *testing.T) {
	t.Parallel()
	d := newCronDB(t)
	for _, s := range []queue.Schedule{
		{Name: "cron-skip", Cron: "0 * * * *", Missed: queue.MissedSkip, Kind: "CronSkip"},
		{Name: "cron-once", Cron: "0 * * * *", Missed: queue.MissedRunOnce, Kind: "CronOnce"},
		{Name: "every-skip", Every: time.Hour, Missed: queue.MissedSkip, Kind: "EverySkip"},
		{Name: "every-once", Every: time.Hour, Kind: "EveryOnce"}, // run_once is the default
	} {
		d.upsert(t, s, t0)
	}
	if p := d.get(t, "every-once").Missed; p != queue.MissedRunOnce {
		t.Fatalf("default policy %q; want run_once", p)
	}
	want := map[string]int{}
	step := func(name string, now time.Time, skip, once int, next time.Time) {
		t.Helper()
		fired := d.fire(t, now)
		want["CronSkip"] += skip
		want["EverySkip"] += skip
		want["CronOnce"] += once
		want["EveryOnce"] += once
		got := d.jobs(t)
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s: %s has %d jobs; want %d", name, k, got[k], n)
			}
		}
		for _, s := range []string{"cron-skip", "cron-once", "every-skip", "every-once"} {
			if f := fired[s]; !f.Next.Equal(next) || f.Err != nil {
				t.Errorf("%s: %s fired %+v; want next %s", name, s, f, next)
			}
			if got := d.get(t, s).NextRunAt; !got.Equal(next) {
				t.Errorf("%s: %s stored next %s; want %s", name, s, got, next)
			}
		}
	}
	step("on time", t0.Add(10*time.Second), 1, 1, t0.Add(time.Hour))
	// Down from 00:10 to 05:30: the ticks of 01:00 to 05:00 are missed.
	step("back 30 min after a tick", t0.Add(5*time.Hour+30*time.Minute), 0, 1, t0.Add(6*time.Hour))
	if f := d.fire(t, t0.Add(5*time.Hour+31*time.Minute)); len(f) != 0 {
		t.Errorf("fired again before the next tick: %+v", f)
	}
	step("on time again", t0.Add(6*time.Hour+time.Second), 1, 1, t0.Add(7*time.Hour))
	// Down again; back 20 s after the 09:00 tick: 07:00 and 08:00 are
	// missed, 09:00 is on time.
	step("back 20 s after a tick", t0.Add(9*time.Hour+20*time.Second), 1, 2, t0.Add(10*time.Hour))
}

// TestCronPauseResume: a paused schedule does not tick, also across an
// upsert (a deploy); resuming goes on from the next tick after the resume,
// without running the ticks that passed while it was paused.
func TestCronPauseResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newCronDB(t)
	s := queue.Schedule{Name: "p", Every: time.Hour, Kind: "P"}
	d.upsert(t, s, t0)
	if err := d.a.PauseSchedule(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if !d.get(t, "p").Paused {
		t.Fatal("not paused after PauseSchedule")
	}
	if f := d.fire(t, t0.Add(3*time.Hour)); len(f) != 0 || d.jobs(t)["P"] != 0 {
		t.Fatalf("a paused schedule fired: %+v", f)
	}
	d.upsert(t, s, time.Time{})
	if !d.get(t, "p").Paused {
		t.Fatal("an upsert resumed the schedule")
	}
	before := d.dbNow(t)
	if err := d.a.ResumeSchedule(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	after := d.dbNow(t)
	info := d.get(t, "p")
	if info.Paused || info.NextRunAt.Before(before.Add(time.Hour)) || info.NextRunAt.After(after.Add(time.Hour)) {
		t.Fatalf("after resume: paused %v, next %s; want the first tick after the resume (%s .. %s)",
			info.Paused, info.NextRunAt, before.Add(time.Hour), after.Add(time.Hour))
	}
	// The ticks from t0 to the resume were paused, not missed: none runs.
	if f := d.fire(t, time.Time{}); len(f) != 0 || d.jobs(t)["P"] != 0 {
		t.Fatalf("resume ran ticks of the pause: %+v", f)
	}
	f := d.fire(t, info.NextRunAt)
	if len(f["p"].JobIDs) != 1 || d.jobs(t)["P"] != 1 {
		t.Fatalf("the first tick after the resume: %+v", f)
	}
	// Resuming a schedule that runs changes nothing.
	next := d.get(t, "p").NextRunAt
	if err := d.a.ResumeSchedule(ctx, "p"); err != nil || !d.get(t, "p").NextRunAt.Equal(next) {
		t.Fatalf("resume of a running schedule: %v, next %s -> %s", err, next, d.get(t, "p").NextRunAt)
	}
	for _, op := range []func(context.Context, string) error{d.a.PauseSchedule, d.a.ResumeSchedule} {
		if err := op(ctx, "nope"); !errors.Is(err, queue.ErrScheduleNotFound) || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("on an unknown schedule: %v; want ErrScheduleNotFound naming it", err)
		}
	}
}

// TestCronTrigger: a trigger dispatches the schedule's job at once, paused
// or not, and leaves the next tick where it was.
func TestCronTrigger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newCronDB(t)
	s := queue.Schedule{Name: "report", Cron: "0 3 * * *", Kind: "Report", Queue: "reports", Payload: json.RawMessage(`{"month": "2030-01"}`),
		Priority: 3, MaxRetries: 2, RetryDelay: 5 * time.Second, Timeout: 30 * time.Second}
	d.upsert(t, s, t0)
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	wake, err := d.a.Subscribe(subCtx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.a.TriggerSchedule(ctx, "report")
	if err != nil {
		t.Fatal(err)
	}
	expectWake(t, wake, "reports")
	j, err := d.a.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Kind != "Report" || j.Queue != "reports" || j.State != queue.StateAvailable || j.Priority != 3 || j.MaxRetries != 2 ||
		j.RetryDelay != 5*time.Second || j.Timeout != 30*time.Second || string(j.Payload) != `{"month": "2030-01"}` {
		t.Errorf("triggered job = %+v", j)
	}
	info := d.get(t, "report")
	if info.LastJobID != id || info.LastRunAt.IsZero() || !info.NextRunAt.Equal(t0) {
		t.Errorf("after trigger: last job %s at %s, next %s; want %s, now, %s (unchanged)", info.LastJobID, info.LastRunAt, info.NextRunAt, id, t0)
	}
	// The tick still comes, once.
	if f := d.fire(t, t0.Add(time.Second)); len(f["report"].JobIDs) != 1 || d.jobs(t)["Report"] != 2 {
		t.Errorf("tick after a trigger: %+v, jobs %v", f, d.jobs(t))
	}
	// A paused schedule can be triggered.
	if err := d.a.PauseSchedule(ctx, "report"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.a.TriggerSchedule(ctx, "report"); err != nil || d.jobs(t)["Report"] != 3 {
		t.Errorf("trigger of a paused schedule: %v, jobs %v", err, d.jobs(t))
	}
	if _, err := d.a.TriggerSchedule(ctx, "nope"); !errors.Is(err, queue.ErrScheduleNotFound) {
		t.Errorf("trigger of an unknown schedule: %v; want ErrScheduleNotFound", err)
	}
}

// TestCronRemove: a removed schedule no longer ticks; its jobs stay.
func TestCronRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newCronDB(t)
	d.upsert(t, hourly("gone", "Gone"), t0)
	d.upsert(t, hourly("kept", "Kept"), t0)
	d.fire(t, t0)
	if err := d.a.RemoveSchedule(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.a.GetSchedule(ctx, "gone"); !errors.Is(err, queue.ErrScheduleNotFound) {
		t.Fatalf("GetSchedule after remove: %v", err)
	}
	d.fire(t, t0.Add(time.Hour))
	if got := d.jobs(t); got["Gone"] != 1 || got["Kept"] != 2 {
		t.Fatalf("jobs = %v; want Gone 1 (its job stays), Kept 2", got)
	}
	list, err := d.a.ListSchedules(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "kept" {
		t.Fatalf("ListSchedules = %v, %v; want only kept", list, err)
	}
	if err := d.a.RemoveSchedule(ctx, "gone"); !errors.Is(err, queue.ErrScheduleNotFound) {
		t.Fatalf("second remove: %v; want ErrScheduleNotFound", err)
	}
}

// TestCronUpsertKeepsTheNextTick: upserting an unchanged schedule, as every
// start of an application does, neither moves nor repeats a tick; a new
// timing ticks anew.
func TestCronUpsertKeepsTheNextTick(t *testing.T) {
	t.Parallel()
	d := newCronDB(t)
	s := queue.Schedule{Name: "u", Every: time.Hour, Kind: "U"}
	d.upsert(t, s, t0)
	d.fire(t, t0)
	first := d.get(t, "u")
	d.upsert(t, s, time.Time{})
	if again := d.get(t, "u"); !again.NextRunAt.Equal(t0.Add(time.Hour)) || !again.UpdatedAt.Equal(first.UpdatedAt) {
		t.Fatalf("unchanged upsert: next %s, updated %s; want %s, %s (untouched)", again.NextRunAt, again.UpdatedAt, t0.Add(time.Hour), first.UpdatedAt)
	}
	if f := d.fire(t, t0.Add(time.Minute)); len(f) != 0 {
		t.Fatalf("fired after an unchanged upsert: %+v", f)
	}
	s.Payload = json.RawMessage(`{"v": 2}`)
	d.upsert(t, s, time.Time{})
	if got := d.get(t, "u"); !got.NextRunAt.Equal(t0.Add(time.Hour)) || string(got.Payload) != `{"v": 2}` {
		t.Fatalf("new payload: next %s, payload %s", got.NextRunAt, got.Payload)
	}
	before := d.dbNow(t)
	s.Every = 2 * time.Hour
	d.upsert(t, s, time.Time{})
	if got := d.get(t, "u").NextRunAt; got.Before(before.Add(2*time.Hour)) || got.After(d.dbNow(t).Add(2*time.Hour)) {
		t.Fatalf("new interval: next %s; want two hours from now", got)
	}
	if d.jobs(t)["U"] != 1 {
		t.Fatalf("jobs = %v; want one", d.jobs(t))
	}
}

// TestCronSQL: schedules written with plain SQL tick like the Go ones;
// pause, resume and trigger work from SQL; a cron expression the firers
// cannot read is reported on the row and leaves the schedule alone.
func TestCronSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newCronDB(t)
	d.exec(t, `INSERT INTO tasq_schedules (name, kind, every_ms, payload, queue) VALUES ('sql-every', 'SQLEvery', 3600000, '{"n": 1}', 'sqlq')`)
	d.exec(t, `INSERT INTO tasq_schedules (name, kind, cron, time_zone) VALUES ('sql-cron', 'SQLCron', '0 9 * * *', 'Europe/Berlin')`)
	if s := d.get(t, "sql-cron"); !s.NextRunAt.IsZero() || s.Missed != queue.MissedRunOnce || s.Queue != "default" || s.MaxRetries != 3 {
		t.Fatalf("SQL-inserted schedule: %+v", s)
	}
	// The first pass gives them their first tick after now, and runs nothing.
	f := d.fire(t, t0)
	if len(f) != 2 || d.jobs(t)["SQLEvery"]+d.jobs(t)["SQLCron"] != 0 {
		t.Fatalf("first pass: %+v, jobs %v", f, d.jobs(t))
	}
	nine := time.Date(2030, 1, 1, 8, 0, 0, 0, time.UTC) // 09:00 in Berlin
	if !f["sql-every"].Next.Equal(t0.Add(time.Hour)) || !f["sql-cron"].Next.Equal(nine) {
		t.Fatalf("first ticks: every %s, cron %s", f["sql-every"].Next, f["sql-cron"].Next)
	}
	d.fire(t, t0.Add(time.Hour))
	d.fire(t, nine.Add(2*time.Second))
	jobs := d.jobs(t)
	if jobs["SQLCron"] != 1 || jobs["SQLEvery"] != 3 { // 01:00; 02:00-07:00 missed (one job); 08:00 on time
		t.Fatalf("jobs = %v; want SQLCron 1, SQLEvery 3", jobs)
	}
	var payload, q string
	if err := d.conn.QueryRow(ctx, `SELECT payload::text, queue FROM tasq_jobs WHERE kind = 'SQLEvery' LIMIT 1`).Scan(&payload, &q); err != nil ||
		payload != `{"n": 1}` || q != "sqlq" {
		t.Fatalf("SQLEvery job: payload %s queue %s (%v)", payload, q, err)
	}

	// Pause with a plain UPDATE, resume with the function: the next tick is
	// computed after the resume.
	d.exec(t, `UPDATE tasq_schedules SET paused = true WHERE name = 'sql-cron'`)
	if f := d.fire(t, nine.Add(48*time.Hour)); len(f["sql-cron"].JobIDs) != 0 {
		t.Fatalf("a schedule paused with SQL fired: %+v", f["sql-cron"])
	}
	var found bool
	if err := d.conn.QueryRow(ctx, `SELECT tasq_resume_schedule('sql-cron')`).Scan(&found); err != nil || !found {
		t.Fatalf("tasq_resume_schedule = %v, %v", found, err)
	}
	if s := d.get(t, "sql-cron"); s.Paused || !s.NextRunAt.IsZero() {
		t.Fatalf("after SQL resume: paused %v next %s; want running, next to be computed", s.Paused, s.NextRunAt)
	}
	f = d.fire(t, nine.Add(72*time.Hour+time.Minute))
	if len(f["sql-cron"].JobIDs) != 0 || !f["sql-cron"].Next.Equal(nine.Add(96*time.Hour)) {
		t.Fatalf("first pass after the SQL resume: %+v", f["sql-cron"])
	}
	if err := d.conn.QueryRow(ctx, `SELECT tasq_pause_schedule('sql-nope')`).Scan(&found); err != nil || found {
		t.Fatalf("tasq_pause_schedule of an unknown name = %v, %v; want false", found, err)
	}
	var id uuid.UUID
	if err := d.conn.QueryRow(ctx, `SELECT tasq_trigger_schedule('sql-cron')`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if info := d.get(t, "sql-cron"); info.LastJobID != id || !info.NextRunAt.Equal(nine.Add(96*time.Hour)) {
		t.Fatalf("after tasq_trigger_schedule: last job %s (want %s), next %s", info.LastJobID, id, info.NextRunAt)
	}
	_, err := d.conn.Exec(ctx, `SELECT tasq_trigger_schedule('sql-nope')`)
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "P0002" || !strings.Contains(pgErr.Message, "sql-nope") {
		t.Fatalf("tasq_trigger_schedule of an unknown name: %v; want P0002 naming it", err)
	}

	// A new timing from SQL: the next tick is computed anew.
	d.exec(t, `UPDATE tasq_schedules SET cron = '0 10 * * *' WHERE name = 'sql-cron'`)
	if s := d.get(t, "sql-cron"); !s.NextRunAt.IsZero() {
		t.Fatalf("after a new cron expression the old next tick %s stayed", s.NextRunAt)
	}
	if f := d.fire(t, nine); !f["sql-cron"].Next.Equal(nine.Add(time.Hour)) {
		t.Fatalf("next tick of the new expression: %+v", f["sql-cron"])
	}

	// An expression that does not parse: the firer says why on the row and
	// leaves the schedule alone until it is fixed.
	d.exec(t, `INSERT INTO tasq_schedules (name, kind, cron) VALUES ('sql-bad', 'SQLBad', 'every day at noon')`)
	f = d.fire(t, t0)
	if err := f["sql-bad"].Err; !errors.Is(err, queue.ErrInvalidSchedule) {
		t.Fatalf("firing a bad expression: %+v", f["sql-bad"])
	}
	if s := d.get(t, "sql-bad"); !strings.Contains(s.Error, `"every day at noon" does not parse`) {
		t.Fatalf("stored error %q", s.Error)
	}
	if f := d.fire(t, t0); len(f) != 0 {
		t.Fatalf("a broken schedule was claimed again: %+v", f)
	}
	d.exec(t, `UPDATE tasq_schedules SET cron = '0 12 * * *' WHERE name = 'sql-bad'`)
	if s := d.get(t, "sql-bad"); s.Error != "" {
		t.Fatalf("error %q stayed after the fix", s.Error)
	}
	if f := d.fire(t, t0); !f["sql-bad"].Next.Equal(t0.Add(12 * time.Hour)) {
		t.Fatalf("fixed schedule: %+v", f["sql-bad"])
	}

	// What SQL can check, it refuses, naming it.
	for _, c := range []struct{ sql, want string }{
		{`INSERT INTO tasq_schedules (name, kind, cron, time_zone) VALUES ('z', 'K', '0 * * * *', 'Mars/Olympus_Mons')`, `time zone "Mars/Olympus_Mons" not recognized`},
		{`INSERT INTO tasq_schedules (name, kind, cron, every_ms) VALUES ('z', 'K', '0 * * * *', 60000)`, "tasq_schedules_cron_or_every"},
		{`INSERT INTO tasq_schedules (name, kind) VALUES ('z', 'K')`, "tasq_schedules_cron_or_every"},
		{`INSERT INTO tasq_schedules (name, kind, every_ms) VALUES ('z', 'K', 0)`, "tasq_schedules_every_range"},
		{`INSERT INTO tasq_schedules (name, kind, every_ms, missed) VALUES ('z', 'K', 60000, 'catch_up')`, "tasq_schedules_missed_policy"},
		{`INSERT INTO tasq_schedules (name, kind, every_ms) VALUES ('', 'K', 60000)`, "tasq_schedules_name_valid"},
		{`INSERT INTO tasq_schedules (name, kind, every_ms) VALUES ('a b', 'K', 60000)`, "tasq_schedules_name_valid"},
		{`INSERT INTO tasq_schedules (name, kind, every_ms, queue) VALUES ('z', 'K', 60000, '')`, "tasq_schedules_queue_valid"},
		{`INSERT INTO tasq_schedules (name, kind, every_ms) VALUES ('sql-every', 'K', 60000)`, "tasq_schedules_pkey"},
	} {
		_, err := d.conn.Exec(ctx, c.sql)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error saying %s", c.sql, err, c.want)
		}
	}
}

// TestCronSchema: schedules in a schema other than public, with public
// empty: the adapter's statements and the SQL functions all find their own.
func TestCronSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := schemaDatabase(t, "app_cron")
	a, err := postgres.New(ctx, dsn, postgres.WithSchema("app_cron"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := a.UpsertSchedule(ctx, queue.Schedule{Name: "s", Every: time.Hour, Kind: "S", Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	if err := a.AddSchedule(ctx, queue.Schedule{Name: "s", Every: time.Hour, Kind: "S"}); !errors.Is(err, queue.ErrScheduleExists) {
		t.Fatalf("AddSchedule of a taken name: %v", err)
	}
	if _, err := conn.Exec(ctx, `UPDATE app_cron.tasq_schedules SET next_run_at = $1`, t0); err != nil {
		t.Fatal(err)
	}
	fired, err := a.FireSchedules(ctx, t0)
	if err != nil || len(fired) != 1 || len(fired[0].JobIDs) != 1 {
		t.Fatalf("FireSchedules = %+v, %v", fired, err)
	}
	if j, err := a.GetJob(ctx, fired[0].JobIDs[0]); err != nil || j.Kind != "S" || j.Queue != "q" {
		t.Fatalf("fired job: %+v, %v", j, err)
	}
	var id uuid.UUID
	if err := conn.QueryRow(ctx, `SELECT app_cron.tasq_trigger_schedule('s')`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetJob(ctx, id); err != nil {
		t.Fatalf("job of the SQL trigger: %v", err)
	}
	if id2, err := a.TriggerSchedule(ctx, "s"); err != nil || id2 == id {
		t.Fatalf("TriggerSchedule = %s, %v", id2, err)
	}
	var found bool
	if err := conn.QueryRow(ctx, `SELECT app_cron.tasq_pause_schedule('s')`).Scan(&found); err != nil || !found {
		t.Fatalf("app_cron.tasq_pause_schedule = %v, %v", found, err)
	}
	if err := a.ResumeSchedule(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE app_cron.tasq_schedules SET paused = true`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE app_cron.tasq_schedules SET paused = false`); err != nil {
		t.Fatal(err)
	}
	list, err := a.ListSchedules(ctx)
	if err != nil || len(list) != 1 || !list[0].NextRunAt.IsZero() || list[0].Paused {
		t.Fatalf("after a resume with SQL: %+v, %v; want running with its next tick to be computed", list, err)
	}
	if err := a.RemoveSchedule(ctx, "s"); err != nil {
		t.Fatal(err)
	}
}

// TestCronDST: a daily schedule in a zone with daylight saving time keeps
// its wall-clock hour, and runs once on the nights the clocks change.
func TestCronDST(t *testing.T) {
	t.Parallel()
	d := newCronDB(t)
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		s     queue.Schedule
		ticks []string // UTC; the first is set, the others follow
	}{
		{queue.Schedule{Name: "ny-nine", Cron: "0 9 * * *", TimeZone: "America/New_York", Kind: "NY"},
			[]string{"2025-03-08T14:00:00Z", "2025-03-09T13:00:00Z", "2025-03-10T13:00:00Z", "2025-03-11T13:00:00Z"}},
		{queue.Schedule{Name: "berlin-spring", Cron: "30 2 * * *", TimeZone: "Europe/Berlin", Kind: "BerlinSpring"},
			[]string{"2025-03-29T01:30:00Z", "2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z"}},
		{queue.Schedule{Name: "berlin-autumn", Cron: "30 2 * * *", TimeZone: "Europe/Berlin", Kind: "BerlinAutumn"},
			[]string{"2025-10-25T00:30:00Z", "2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"}},
	} {
		d.upsert(t, c.s, utc(c.ticks[0]))
		for i, tick := range c.ticks[:len(c.ticks)-1] {
			f := d.fire(t, utc(tick).Add(2*time.Second))[c.s.Name]
			if len(f.JobIDs) != 1 || !f.Next.Equal(utc(c.ticks[i+1])) {
				t.Errorf("%s at %s: %d jobs, next %s; want 1, %s", c.s.Name, tick, len(f.JobIDs), f.Next.UTC(), c.ticks[i+1])
			}
			// Firing again at the same moment (the repeated hour's second
			// 02:30 in autumn) runs nothing.
			if again := d.fire(t, utc(tick).Add(time.Hour+2*time.Second)); len(again[c.s.Name].JobIDs) != 0 && !utc(c.ticks[i+1]).Before(utc(tick).Add(time.Hour+2*time.Second)) {
				t.Errorf("%s fired again an hour after %s: %+v", c.s.Name, tick, again[c.s.Name])
			}
		}
		if n := d.jobs(t)[c.s.Kind]; n != len(c.ticks)-1 {
			t.Errorf("%s: %d jobs; want %d", c.s.Name, n, len(c.ticks)-1)
		}
	}
}

// TestCronBadInput: the Go API refuses bad schedules and names what is
// wrong, storing nothing.
func TestCronBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newCronDB(t)
	good := queue.Schedule{Name: "g", Cron: "0 3 * * *", Kind: "G"}
	for _, c := range []struct {
		edit func(*queue.Schedule)
		want string
	}{
		{func(s *queue.Schedule) { s.Name = "" }, "name is empty"},
		{func(s *queue.Schedule) { s.Cron = "0 3 * *" }, `Cron "0 3 * *" does not parse`},
		{func(s *queue.Schedule) { s.TimeZone = "Europe/Atlantis" }, `TimeZone "Europe/Atlantis"`},
		{func(s *queue.Schedule) { s.Cron, s.Every = "", -time.Hour }, "Every is -1h0m0s"},
		{func(s *queue.Schedule) { s.Cron = "" }, "neither Cron nor Every"},
		{func(s *queue.Schedule) { s.Missed = "sometimes" }, `Missed is "sometimes"`},
		{func(s *queue.Schedule) { s.Kind = "" }, "Kind is empty"},
	} {
		s := good
		c.edit(&s)
		for name, op := range map[string]func(context.Context, queue.Schedule) error{"Upsert": d.a.UpsertSchedule, "Add": d.a.AddSchedule} {
			if err := op(ctx, s); !errors.Is(err, queue.ErrInvalidSchedule) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%sSchedule(%+v): %v; want ErrInvalidSchedule saying %q", name, s, err, c.want)
			}
		}
	}
	if list, err := d.a.ListSchedules(ctx); err != nil || len(list) != 0 {
		t.Fatalf("bad schedules were stored: %+v, %v", list, err)
	}
	// A name is taken by the first AddSchedule; UpsertSchedule replaces.
	if err := d.a.AddSchedule(ctx, good); err != nil {
		t.Fatal(err)
	}
	other := good
	other.Kind = "Other"
	if err := d.a.AddSchedule(ctx, other); !errors.Is(err, queue.ErrScheduleExists) || !strings.Contains(err.Error(), `"g"`) {
		t.Fatalf("AddSchedule of a taken name: %v; want ErrScheduleExists naming it", err)
	}
	if d.get(t, "g").Kind != "G" {
		t.Fatal("a refused AddSchedule changed the schedule")
	}
	if err := d.a.UpsertSchedule(ctx, other); err != nil || d.get(t, "g").Kind != "Other" {
		t.Fatalf("UpsertSchedule of a taken name: %v, kind %s; want it replaced", err, d.get(t, "g").Kind)
	}
	if _, err := d.a.GetSchedule(ctx, "G"); !errors.Is(err, queue.ErrScheduleNotFound) {
		t.Fatalf("names are case-sensitive: GetSchedule(G) = %v", err)
	}
}

// TestCronCrashBetweenClaimAndDispatch: firing is one transaction. A firer
// stopped after its claim, or after writing the jobs but before its commit,
// leaves no job and the tick as it was; while it holds the claim, another
// firer passes the schedule by; after it, the tick fires once.
func TestCronCrashBetweenClaimAndDispatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newCronDB(t)
	d.upsert(t, hourly("c", "C"), t0)
	other, err := postgres.New(ctx, d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	crash := errors.New("crash")
	for _, c := range []struct {
		stage  string
		cancel bool // stop by cancelling the firer's context instead of an error
	}{{"claimed", false}, {"claimed", true}, {"dispatched", false}, {"dispatched", true}} {
		name := fmt.Sprintf("%s/cancel=%v", c.stage, c.cancel)
		fctx, cancel := context.WithCancel(ctx)
		inside, release := make(chan struct{}), make(chan struct{})
		let := sync.OnceFunc(func() { close(release) })
		defer let() // on a failure too, so the stopped firer ends and its connection returns
		done := make(chan error, 1)
		go func() {
			_, err := postgres.FireSchedulesWithHook(fctx, d.a, t0.Add(time.Second), func(ctx context.Context, stage string) error {
				if stage != c.stage {
					return nil
				}
				close(inside)
				<-release
				if c.cancel {
					cancel()
					return nil // the next statement (or the commit) fails
				}
				return crash
			})
			done <- err
		}()
		select {
		case <-inside:
		case err := <-done:
			t.Fatalf("%s: the firer returned before the hook: %v", name, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the firer never claimed", name)
		}
		// The claim is held: another firer passes the schedule by, at once.
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		f, err := other.FireSchedules(octx, t0.Add(time.Second))
		ocancel()
		if err != nil || len(f) != 0 {
			t.Fatalf("%s: a second firer while the first holds the claim: %+v, %v; want it to pass the schedule by", name, f, err)
		}
		let()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s: the stopped firer reported success", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the stopped firer did not return", name)
		}
		cancel()
		if n := d.jobs(t)["C"]; n != 0 {
			t.Fatalf("%s: %d jobs after the firer stopped; want 0 (the transaction rolled back)", name, n)
		}
		if s := d.get(t, "c"); !s.NextRunAt.Equal(t0) || s.LastJobID != uuid.Nil {
			t.Fatalf("%s: the schedule moved on: next %s, last job %s", name, s.NextRunAt, s.LastJobID)
		}
	}
	f, err := other.FireSchedules(ctx, t0.Add(time.Second))
	if err != nil || len(f) != 1 || len(f[0].JobIDs) != 1 || d.jobs(t)["C"] != 1 {
		t.Fatalf("the tick after the crashes: %+v, %v, jobs %v; want one job", f, err, d.jobs(t))
	}
}

// quietLog keeps the workers' logs out of the test output unless -v.
func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cronTick is the task the worker test's schedule runs.
type cronTick struct{}

func (*cronTick) Kind() string                           { return "cronTick" }
func (*cronTick) Handle(context.Context) (string, error) { return "tick", nil }

// TestCronWorkerFires: running workers fire a schedule on their own and run
// its jobs; two workers do not double its ticks.
func TestCronWorkerFires(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := newCronDB(t)
	start := time.Now() // the first tick comes a second after the upsert
	if err := d.a.UpsertSchedule(ctx, queue.Schedule{Name: "tick", Every: time.Second, Kind: "cronTick", Queue: "cron_q"}); err != nil {
		t.Fatal(err)
	}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &cronTick{})
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 2 {
		w, err := worker.New(d.a, reg, worker.Config{Queues: []string{"cron_q"}, Cron: worker.CronConfig{Interval: 20 * time.Millisecond},
			PollInterval: 100 * time.Millisecond, ID: fmt.Sprintf("cron-w%d", i), Logger: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := w.Run(wctx); err != nil {
				t.Errorf("worker: %v", err)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var completed int
		if err := d.conn.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE kind = 'cronTick' AND state = 'completed'`).Scan(&completed); err != nil {
			t.Fatal(err)
		}
		if completed >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tick jobs completed after 20 s; want 3", completed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()
	// One job per tick: no more jobs than seconds since the schedule was made.
	var jobs int
	if err := d.conn.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE kind = 'cronTick'`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if limit := int(time.Since(start) / time.Second); jobs > limit {
		t.Fatalf("%d tick jobs in %v from two workers; want at most %d (one per tick)", jobs, time.Since(start), limit)
	}
}
