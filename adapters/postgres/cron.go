package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
)

// Periodic jobs: schedules live in tasq_schedules (migration 8). The
// adapter stores them, and fires the due ones: FireSchedules claims them
// with FOR UPDATE SKIP LOCKED, computes their ticks in Go (queue.Timing),
// and inserts their jobs (through tasq_dispatch) and moves them to their
// next tick in one transaction. See the migration for why that dispatches
// each tick once however many workers fire.

var (
	_ queue.Scheduler     = (*Adapter)(nil)
	_ queue.ScheduleFirer = (*Adapter)(nil)
)

// scheduleColumns are the columns scanSchedule reads, in its order.
const scheduleColumns = `name, cron, every_ms, time_zone, missed, grace_ms, kind, payload, queue, priority, max_retries,
    retry_delay_ms, timeout_ms, paused, next_run_at, last_run_at, last_job_id, error, created_at, updated_at`

func scanSchedule(row pgx.Row) (*queue.ScheduleInfo, error) {
	var (
		s                           queue.ScheduleInfo
		cron, errText               pgtype.Text
		every                       pgtype.Int8
		missed                      string
		graceMS, retryMS, timeoutMS int64
		next, last                  pgtype.Timestamptz
		lastJob                     pgtype.UUID
		payload                     []byte
	)
	if err := row.Scan(&s.Name, &cron, &every, &s.TimeZone, &missed, &graceMS, &s.Kind, &payload, &s.Queue, &s.Priority,
		&s.MaxRetries, &retryMS, &timeoutMS, &s.Paused, &next, &last, &lastJob, &errText, &s.CreatedAt, &s.UpdatedAt); err != nil {
		return nil, err
	}
	s.Cron, s.Missed, s.Payload, s.Error = cron.String, queue.MissedPolicy(missed), payload, errText.String
	s.Every = time.Duration(every.Int64) * time.Millisecond
	s.Grace = time.Duration(graceMS) * time.Millisecond
	s.RetryDelay = time.Duration(retryMS) * time.Millisecond
	s.Timeout = time.Duration(timeoutMS) * time.Millisecond
	if next.Valid {
		s.NextRunAt = next.Time
	}
	if last.Valid {
		s.LastRunAt = last.Time
	}
	if lastJob.Valid {
		s.LastJobID = uuid.UUID(lastJob.Bytes)
	}
	return &s, nil
}

// msCeil is d in whole milliseconds, rounded up, as the columns hold it.
func msCeil(d time.Duration) int64 {
	ms := d.Milliseconds()
	if time.Duration(ms)*time.Millisecond < d {
		ms++
	}
	return ms
}

// scheduleArgs are the values of a schedule's columns, $1..$13 of
// upsertScheduleSQL, then its next tick ($14).
func scheduleArgs(s queue.Schedule, next time.Time) []any {
	cron := pgtype.Text{String: s.Cron, Valid: s.Cron != ""}
	every := pgtype.Int8{Int64: msCeil(s.Every), Valid: s.Every != 0}
	return []any{s.Name, cron, every, s.TimeZone, string(s.Missed), msCeil(s.Grace), s.Kind, string(s.Payload), s.Queue,
		s.Priority, s.MaxRetries, msCeil(s.RetryDelay), msCeil(s.Timeout), next}
}

const insertScheduleSQL = `
INSERT INTO tasq_schedules AS s (name, cron, every_ms, time_zone, missed, grace_ms, kind, payload, queue, priority,
                                 max_retries, retry_delay_ms, timeout_ms, next_run_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14)`

// upsertScheduleSQL replaces a schedule's definition and keeps its next tick
// unless its timing changed (or it has none, or firers gave up on it). An
// unchanged schedule is not written at all, so that every worker of a
// deploy may upsert it at start. paused is never touched.
const upsertScheduleSQL = insertScheduleSQL + `
ON CONFLICT (name) DO UPDATE SET
    cron = EXCLUDED.cron, every_ms = EXCLUDED.every_ms, time_zone = EXCLUDED.time_zone,
    missed = EXCLUDED.missed, grace_ms = EXCLUDED.grace_ms, kind = EXCLUDED.kind, payload = EXCLUDED.payload,
    queue = EXCLUDED.queue, priority = EXCLUDED.priority, max_retries = EXCLUDED.max_retries,
    retry_delay_ms = EXCLUDED.retry_delay_ms, timeout_ms = EXCLUDED.timeout_ms,
    next_run_at = CASE WHEN (s.cron, s.every_ms, s.time_zone) IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.every_ms, EXCLUDED.time_zone)
                         OR s.next_run_at IS NULL OR s.error IS NOT NULL
                       THEN EXCLUDED.next_run_at ELSE s.next_run_at END,
    error = NULL
WHERE (s.cron, s.every_ms, s.time_zone, s.missed, s.grace_ms, s.kind, s.payload, s.queue, s.priority, s.max_retries,
       s.retry_delay_ms, s.timeout_ms)
      IS DISTINCT FROM
      (EXCLUDED.cron, EXCLUDED.every_ms, EXCLUDED.time_zone, EXCLUDED.missed, EXCLUDED.grace_ms, EXCLUDED.kind,
       EXCLUDED.payload, EXCLUDED.queue, EXCLUDED.priority, EXCLUDED.max_retries, EXCLUDED.retry_delay_ms, EXCLUDED.timeout_ms)
   OR s.next_run_at IS NULL OR s.error IS NOT NULL`

// prepareSchedule checks s, fills its defaults and computes its first tick
// after the database's now.
func (a *Adapter) prepareSchedule(ctx context.Context, s queue.Schedule) (queue.Schedule, time.Time, error) {
	if err := s.Check(); err != nil {
		return s, time.Time{}, err
	}
	s = s.WithDefaults()
	tm, err := s.Timing()
	if err != nil {
		return s, time.Time{}, err
	}
	var now time.Time
	if err := a.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return s, time.Time{}, wrapErr("read the clock", err)
	}
	next := tm.Next(now)
	if next.IsZero() {
		return s, time.Time{}, fmt.Errorf("%w: schedule %q has no tick after %s", queue.ErrInvalidSchedule, s.Name, now.Format(time.RFC3339))
	}
	return s, next, nil
}

// AddSchedule implements queue.Scheduler.
func (a *Adapter) AddSchedule(ctx context.Context, s queue.Schedule) error {
	s, next, err := a.prepareSchedule(ctx, s)
	if err != nil {
		return err
	}
	ct, err := a.pool.Exec(ctx, a.sql.q(insertScheduleSQL+` ON CONFLICT (name) DO NOTHING`), scheduleArgs(s, next)...)
	if err != nil {
		return wrapErr(fmt.Sprintf("add schedule %q", s.Name), err)
	}
	if ct.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q (replace it with UpsertSchedule, or remove it first)", queue.ErrScheduleExists, s.Name)
	}
	return nil
}

// UpsertSchedule implements queue.Scheduler.
func (a *Adapter) UpsertSchedule(ctx context.Context, s queue.Schedule) error {
	s, next, err := a.prepareSchedule(ctx, s)
	if err != nil {
		return err
	}
	if _, err := a.pool.Exec(ctx, a.sql.q(upsertScheduleSQL), scheduleArgs(s, next)...); err != nil {
		return wrapErr(fmt.Sprintf("store schedule %q", s.Name), err)
	}
	return nil
}

// notFound is the error for a schedule name no row has.
func notFound(name string) error {
	return fmt.Errorf("%w: %q", queue.ErrScheduleNotFound, name)
}

// RemoveSchedule implements queue.Scheduler.
func (a *Adapter) RemoveSchedule(ctx context.Context, name string) error {
	ct, err := a.pool.Exec(ctx, a.sql.q(`DELETE FROM tasq_schedules WHERE name = $1`), name)
	if err != nil {
		return wrapErr(fmt.Sprintf("remove schedule %q", name), err)
	}
	if ct.RowsAffected() == 0 {
		return notFound(name)
	}
	return nil
}

// PauseSchedule implements queue.Scheduler.
func (a *Adapter) PauseSchedule(ctx context.Context, name string) error {
	var found bool
	if err := a.pool.QueryRow(ctx, a.sql.q(`SELECT tasq_pause_schedule($1)`), name).Scan(&found); err != nil {
		return wrapErr(fmt.Sprintf("pause schedule %q", name), err)
	}
	if !found {
		return notFound(name)
	}
	return nil
}

// ResumeSchedule implements queue.Scheduler. It computes the next tick
// after the database's now, so that it shows at once; when the timing does
// not parse here (a zone this machine lacks), it leaves that to the firers.
func (a *Adapter) ResumeSchedule(ctx context.Context, name string) error {
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		var (
			s      queue.Schedule
			cron   pgtype.Text
			every  pgtype.Int8
			paused bool
			now    time.Time
		)
		err := tx.QueryRow(ctx, a.sql.q(`SELECT cron, every_ms, time_zone, paused, now() FROM tasq_schedules WHERE name = $1 FOR UPDATE`), name).
			Scan(&cron, &every, &s.TimeZone, &paused, &now)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound(name)
		}
		if err != nil {
			return wrapErr(fmt.Sprintf("resume schedule %q", name), err)
		}
		if !paused {
			_, err = tx.Exec(ctx, a.sql.q(`UPDATE tasq_schedules SET error = NULL WHERE name = $1 AND error IS NOT NULL`), name)
			return wrapIf(fmt.Sprintf("resume schedule %q", name), err)
		}
		s.Name, s.Cron, s.Every = name, cron.String, time.Duration(every.Int64)*time.Millisecond
		next := pgtype.Timestamptz{}
		if tm, err := s.Timing(); err == nil {
			if n := tm.Next(now); !n.IsZero() {
				next = pgtype.Timestamptz{Time: n, Valid: true}
			}
		}
		_, err = tx.Exec(ctx, a.sql.q(`UPDATE tasq_schedules SET paused = false, error = NULL, next_run_at = $2 WHERE name = $1`), name, next)
		return wrapIf(fmt.Sprintf("resume schedule %q", name), err)
	})
}

func wrapIf(op string, err error) error {
	if err != nil {
		return wrapErr(op, err)
	}
	return nil
}

// TriggerSchedule implements queue.Scheduler with tasq_trigger_schedule(),
// the SQL function psql users call.
func (a *Adapter) TriggerSchedule(ctx context.Context, name string) (uuid.UUID, error) {
	var id pgtype.UUID
	err := a.pool.QueryRow(ctx, a.sql.q(`SELECT tasq_trigger_schedule($1)`), name).Scan(&id)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "P0002" {
		return uuid.Nil, notFound(name)
	}
	if err != nil {
		return uuid.Nil, wrapErr(fmt.Sprintf("trigger schedule %q", name), err)
	}
	return uuid.UUID(id.Bytes), nil
}

// GetSchedule implements queue.Scheduler.
func (a *Adapter) GetSchedule(ctx context.Context, name string) (*queue.ScheduleInfo, error) {
	s, err := scanSchedule(a.pool.QueryRow(ctx, a.sql.q(`SELECT `+scheduleColumns+` FROM tasq_schedules WHERE name = $1`), name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(name)
	}
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("read schedule %q", name), err)
	}
	return s, nil
}

// ListSchedules implements queue.Scheduler.
func (a *Adapter) ListSchedules(ctx context.Context) ([]*queue.ScheduleInfo, error) {
	rows, err := a.pool.Query(ctx, a.sql.q(`SELECT `+scheduleColumns+` FROM tasq_schedules ORDER BY name`))
	if err != nil {
		return nil, wrapErr("list schedules", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*queue.ScheduleInfo, error) { return scanSchedule(r) })
	if err != nil {
		return nil, wrapErr("list schedules", err)
	}
	return list, nil
}

// dueWhere selects the schedules due at $1 (the database's now when NULL).
const dueWhere = `NOT s.paused AND s.error IS NULL AND (s.next_run_at IS NULL OR s.next_run_at <= coalesce($1::timestamptz, now()))`

// anyDueSQL is the idle probe: one index lookup, outside a transaction.
const anyDueSQL = `SELECT EXISTS (SELECT FROM tasq_schedules AS s WHERE ` + dueWhere + `)`

// claimDueSQL locks up to $2 due schedules that no other firer holds, and
// returns them with the time they are fired at.
const claimDueSQL = `
SELECT s.name, s.cron, s.every_ms, s.time_zone, s.missed, s.grace_ms, s.next_run_at, coalesce($1::timestamptz, now())
FROM tasq_schedules AS s
WHERE ` + dueWhere + `
ORDER BY s.next_run_at NULLS FIRST, s.name
LIMIT $2
FOR UPDATE OF s SKIP LOCKED`

// fireSQL moves the claimed schedules ($1) to their next ticks ($2), or
// stores why their ticks cannot be computed ($4), records their last job
// ($3), and dispatches their jobs ($5 schedule names, $6 job IDs) with
// tasq_dispatch(), which notifies the workers of each job's queue at the
// commit. It returns the IDs of the jobs it dispatched.
const fireSQL = `
WITH f AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::uuid[], $4::text[]) AS f(name, next_run_at, last_job_id, error)
), upd AS (
    UPDATE tasq_schedules AS s SET
        next_run_at = coalesce(f.next_run_at, s.next_run_at),
        last_run_at = CASE WHEN f.last_job_id IS NULL THEN s.last_run_at ELSE now() END,
        last_job_id = coalesce(f.last_job_id, s.last_job_id),
        error = f.error
    FROM f WHERE s.name = f.name
    RETURNING s.name, s.kind, s.payload, s.queue, s.priority, s.max_retries, s.retry_delay_ms, s.timeout_ms
)
SELECT tasq_dispatch(upd.kind, upd.payload, upd.queue, NULL, upd.priority, upd.max_retries,
                     upd.retry_delay_ms * interval '1 millisecond', upd.timeout_ms * interval '1 millisecond', j.id)
FROM upd JOIN unnest($5::text[], $6::uuid[]) WITH ORDINALITY AS j(name, id, n) ON j.name = upd.name
ORDER BY j.n`

// fireBatchSize is how many schedules one transaction of FireSchedules
// fires at most.
const fireBatchSize = 100

// FireSchedules implements queue.ScheduleFirer: it fires the schedules due
// at now (the database's clock when now is zero), fireBatchSize per
// transaction, until none is due. Any number of workers may call it at
// once: each due schedule is fired by one of them, and its jobs and its
// next tick commit together.
func (a *Adapter) FireSchedules(ctx context.Context, now time.Time) ([]queue.FiredSchedule, error) {
	return a.fireSchedules(ctx, now, nil)
}

// fireHook, in tests, runs inside a firing transaction at a stage:
// "claimed" (nothing written yet) and "dispatched" (not committed yet).
type fireHook func(ctx context.Context, stage string) error

// fireSchedules is FireSchedules with a hook for tests.
func (a *Adapter) fireSchedules(ctx context.Context, now time.Time, hook fireHook) ([]queue.FiredSchedule, error) {
	at := pgtype.Timestamptz{Time: now, Valid: !now.IsZero()}
	var due bool
	if err := a.pool.QueryRow(ctx, a.sql.q(anyDueSQL), at).Scan(&due); err != nil {
		return nil, wrapErr("look for due schedules", err)
	}
	if !due {
		return nil, nil
	}
	var all []queue.FiredSchedule
	// A fired schedule's next tick is after now, so each round fires other
	// schedules; the bound only guards against a bug looping for ever.
	for range 1000 {
		fired, claimed, err := a.fireBatch(ctx, at, hook)
		all = append(all, fired...)
		if err != nil || claimed < fireBatchSize {
			return all, err
		}
	}
	return all, nil
}

// claimedSchedule is a row of claimDueSQL.
type claimedSchedule struct {
	s    queue.Schedule
	next pgtype.Timestamptz
	now  time.Time
}

// fireBatch fires up to fireBatchSize due schedules in one transaction and
// returns what it did and how many it claimed.
func (a *Adapter) fireBatch(ctx context.Context, at pgtype.Timestamptz, hook fireHook) (fired []queue.FiredSchedule, claimed int, err error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return nil, 0, wrapErr("fire schedules: begin", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	rows, err := tx.Query(ctx, a.sql.q(claimDueSQL), at, fireBatchSize)
	if err != nil {
		return nil, 0, wrapErr("fire schedules: claim", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimedSchedule, error) {
		var (
			c       claimedSchedule
			cron    pgtype.Text
			every   pgtype.Int8
			missed  string
			graceMS int64
		)
		err := r.Scan(&c.s.Name, &cron, &every, &c.s.TimeZone, &missed, &graceMS, &c.next, &c.now)
		c.s.Cron, c.s.Missed = cron.String, queue.MissedPolicy(missed)
		c.s.Every = time.Duration(every.Int64) * time.Millisecond
		c.s.Grace = time.Duration(graceMS) * time.Millisecond
		return c, err
	})
	if err != nil {
		return nil, 0, wrapErr("fire schedules: claim", err)
	}
	if len(list) == 0 {
		return nil, 0, tx.Rollback(ctx)
	}

	n := len(list)
	names := make([]string, n)
	nexts := make([]pgtype.Timestamptz, n)
	lastJobs := make([]pgtype.UUID, n)
	errs := make([]pgtype.Text, n)
	var jobNames []string
	var jobIDs []pgtype.UUID
	fired = make([]queue.FiredSchedule, n)
	for i, c := range list {
		names[i] = c.s.Name
		f := &fired[i]
		f.Name = c.s.Name
		var plan queue.TickPlan
		tm, err := c.s.Timing()
		if err == nil {
			var next time.Time
			if c.next.Valid {
				next = c.next.Time
			}
			plan, err = tm.Plan(next, c.now, c.s.Missed, c.s.Grace)
		}
		if err != nil {
			f.Err = err
			errs[i] = pgtype.Text{String: err.Error(), Valid: true}
			continue
		}
		f.Ticks, f.Missed, f.Next = plan.Ticks, plan.Missed, plan.Next
		nexts[i] = pgtype.Timestamptz{Time: plan.Next, Valid: true}
		for range plan.Jobs() {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, 0, fmt.Errorf("tasq/postgres: fire schedules: generate a job ID: %w", err)
			}
			f.JobIDs = append(f.JobIDs, id)
			jobNames = append(jobNames, c.s.Name)
			jobIDs = append(jobIDs, pgtype.UUID{Bytes: id, Valid: true})
			lastJobs[i] = pgtype.UUID{Bytes: id, Valid: true}
		}
	}
	if hook != nil {
		if err := hook(ctx, "claimed"); err != nil {
			return nil, 0, err
		}
	}
	rows, err = tx.Query(ctx, a.sql.q(fireSQL), names, nexts, lastJobs, errs, jobNames, jobIDs)
	if err != nil {
		return nil, 0, wrapErr("fire schedules: dispatch", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[pgtype.UUID])
	if err != nil {
		return nil, 0, wrapErr("fire schedules: dispatch", err)
	}
	if len(got) != len(jobIDs) {
		return nil, 0, fmt.Errorf("tasq/postgres: fire schedules: dispatched %d jobs, want %d", len(got), len(jobIDs))
	}
	if hook != nil {
		if err := hook(ctx, "dispatched"); err != nil {
			return nil, 0, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, 0, wrapErr("fire schedules: commit", err)
	}
	return fired, n, nil
}
