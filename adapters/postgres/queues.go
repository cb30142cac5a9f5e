package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
)

var _ queue.QueueController = (*Adapter)(nil)

// PauseQueue implements queue.QueueController. The claim checks the pause,
// so it holds from the moment this returns for every claim that starts
// afterwards; a claim already under way when it committed may still take
// jobs, which run as running jobs do.
func (a *Adapter) PauseQueue(ctx context.Context, name string) error {
	if err := queue.ValidateQueueName(name); err != nil {
		return err
	}
	if _, err := a.pool.Exec(ctx, a.sql.q(`SELECT tasq_pause_queue($1)`), name); err != nil {
		return wrapErr("pause queue "+name, err)
	}
	return nil
}

// ResumeQueue implements queue.QueueController, and wakes the queue's workers.
func (a *Adapter) ResumeQueue(ctx context.Context, name string) error {
	if err := queue.ValidateQueueName(name); err != nil {
		return err
	}
	if _, err := a.pool.Exec(ctx, a.sql.q(`SELECT tasq_resume_queue($1)`), name); err != nil {
		return wrapErr("resume queue "+name, err)
	}
	return nil
}

// setLimitsSQL writes a queue's limits, keeping its pause. The start logs
// start afresh when a start limit changes.
const setLimitsSQL = `
INSERT INTO tasq_queues AS q (name, max_running, max_starts, starts_period_ms,
                              key_path, key_max_running, key_max_starts, key_starts_period_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (name) DO UPDATE SET
    max_running = EXCLUDED.max_running, max_starts = EXCLUDED.max_starts,
    starts_period_ms = EXCLUDED.starts_period_ms, key_path = EXCLUDED.key_path,
    key_max_running = EXCLUDED.key_max_running, key_max_starts = EXCLUDED.key_max_starts,
    key_starts_period_ms = EXCLUDED.key_starts_period_ms,
    starts = CASE WHEN (q.max_starts, q.starts_period_ms) IS NOT DISTINCT FROM (EXCLUDED.max_starts, EXCLUDED.starts_period_ms)
                  THEN q.starts ELSE '{}' END,
    updated_at = now()`

// dropUncontrolledSQL removes the row of a queue left neither paused nor
// limited, so that it is claimed the plain way again.
const dropUncontrolledSQL = `
DELETE FROM tasq_queues
WHERE name = $1 AND paused_at IS NULL AND max_running IS NULL AND max_starts IS NULL AND key_path IS NULL`

// SetQueueLimits implements queue.QueueController.
func (a *Adapter) SetQueueLimits(ctx context.Context, name string, l queue.QueueLimits) error {
	if err := queue.ValidateQueueName(name); err != nil {
		return err
	}
	if err := l.Check(); err != nil {
		return err
	}
	nullInt := func(n int) pgtype.Int4 { return pgtype.Int4{Int32: int32(n), Valid: n > 0} }
	nullMS := func(d time.Duration) pgtype.Int8 { return pgtype.Int8{Int64: d.Milliseconds(), Valid: d > 0} }
	b := &pgx.Batch{} // one implicit transaction
	b.Queue(a.sql.q(setLimitsSQL), name, nullInt(l.Total.MaxRunning), nullInt(l.Total.MaxStarts), nullMS(l.Total.Per),
		l.KeyPath(), nullInt(l.PerKey.MaxRunning), nullInt(l.PerKey.MaxStarts), nullMS(l.PerKey.Per))
	b.Queue(a.sql.q(dropUncontrolledSQL), name)
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return wrapErr("set limits of queue "+name, err)
	}
	// Workers waiting on a queue whose limits were raised can claim now.
	a.notify(ctx, map[string]bool{name: true})
	return nil
}

// QueueStates implements queue.QueueController.
func (a *Adapter) QueueStates(ctx context.Context) ([]queue.QueueState, error) {
	rows, err := a.pool.Query(ctx, a.sql.q(`SELECT name, paused_at, max_running, max_starts, starts_period_ms,
    key_path, key_max_running, key_max_starts, key_starts_period_ms
FROM tasq_queues ORDER BY name`))
	if err != nil {
		return nil, wrapErr("list queue states", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.QueueState, error) {
		var (
			s                          queue.QueueState
			paused                     pgtype.Timestamptz
			run, starts, kRun, kStarts pgtype.Int4
			per, kPer                  pgtype.Int8
			path                       []string
		)
		if err := r.Scan(&s.Name, &paused, &run, &starts, &per, &path, &kRun, &kStarts, &kPer); err != nil {
			return s, err
		}
		s.Paused, s.PausedAt = paused.Valid, paused.Time
		s.Limits = queue.QueueLimits{
			Total:    queue.Limit{MaxRunning: int(run.Int32), MaxStarts: int(starts.Int32), Per: time.Duration(per.Int64) * time.Millisecond},
			KeyField: strings.Join(path, "."),
			PerKey:   queue.Limit{MaxRunning: int(kRun.Int32), MaxStarts: int(kStarts.Int32), Per: time.Duration(kPer.Int64) * time.Millisecond},
		}
		return s, nil
	})
	if err != nil {
		return nil, wrapErr("list queue states", err)
	}
	return out, nil
}

// control is a controlled queue's row, locked for the claim.
type control struct {
	paused  bool
	total   limitRow
	keyPath []string
	perKey  limitRow
	starts  []time.Time // the queue's start log
}

type limitRow struct {
	maxRunning, maxStarts int
	per                   time.Duration
}

// recent returns the starts of log later than now-per: those that count.
func (l limitRow) recent(log []time.Time, now time.Time) []time.Time {
	cut := now.Add(-l.per)
	i := 0
	for i < len(log) && !log[i].After(cut) {
		i++
	}
	return log[i:]
}

// room returns how many more jobs the limit lets start now, given what
// runs and the recent starts, and when a start-limited window opens next.
func (l limitRow) room(running int, recent []time.Time) (n int, opens time.Time) {
	n = int(^uint(0) >> 1)
	if l.maxRunning > 0 {
		n = min(n, l.maxRunning-running)
	}
	if l.maxStarts > 0 {
		n = min(n, l.maxStarts-len(recent))
		if len(recent) >= l.maxStarts {
			opens = recent[len(recent)-l.maxStarts].Add(l.per)
		}
	}
	return max(n, 0), opens
}

const lockQueueSQL = `
SELECT paused_at IS NOT NULL, coalesce(max_running, 0), coalesce(max_starts, 0), coalesce(starts_period_ms, 0),
       key_path, coalesce(key_max_running, 0), coalesce(key_max_starts, 0), coalesce(key_starts_period_ms, 0), starts
FROM tasq_queues WHERE name = $1 FOR UPDATE`

// runningByKeySQL counts the queue's running jobs by key ($2, a path into
// the payload; NULL puts them all under ”), from the running-jobs index,
// with the clock the claim's limits use. It runs after the queue's row is
// locked, in a statement of its own: its snapshot sees every claim of the
// queue that committed before.
const runningByKeySQL = `
SELECT clock_timestamp(), coalesce((
    SELECT jsonb_object_agg(k, n) FROM (
        SELECT coalesce(payload #>> $2::text[], '') AS k, count(*) AS n
        FROM tasq_jobs WHERE state = 'running' AND queue = $1 GROUP BY 1) AS r), '{}')`

// keyStartsSQL reads the start logs of the queue's keys that started a job
// within the period ($2 is the claim's clock, $3 the period in ms).
const keyStartsSQL = `
SELECT key, starts FROM tasq_queue_keys
WHERE queue = $1 AND last_start > $2::timestamptz - $3 * interval '1 millisecond'`

// candidatesSQL picks the next available jobs of the queue whose keys are
// not full ($6), locking them; the claim takes those their keys have room for.
const candidatesSQL = `
SELECT id, coalesce(payload #>> $2::text[], '') FROM tasq_jobs
WHERE state = 'available' AND queue = $1 AND ($3::text[] IS NULL OR kind = ANY($3::text[]))
  AND coalesce(payload #>> $2::text[], '') <> ALL($4::text[])
ORDER BY priority DESC, run_at, id
LIMIT $5
FOR UPDATE SKIP LOCKED`

// claimLimitedSQL is claimSQL's claim for a controlled queue: at most $2
// jobs, attempted at $6 (the clock the limits count with).
var claimLimitedSQL = `
WITH picked AS (
    SELECT id FROM tasq_jobs
    WHERE state = 'available' AND queue = $1 AND ($5::text[] IS NULL OR kind = ANY($5::text[]))
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE tasq_jobs AS j SET ` + claimSet("$3", "$4", "$6") + `
FROM picked WHERE j.id = picked.id
RETURNING ` + claimedMetaColumns

// claimIDsSQL claims the jobs $1 (locked by candidatesSQL) for worker $2,
// attempted at $4.
var claimIDsSQL = `
UPDATE tasq_jobs AS j SET ` + claimSet("$2", "$3", "$4") + `
WHERE j.id = ANY($1::uuid[])
RETURNING ` + claimedMetaColumns

// claimControlled claims from a paused or limited queue: it locks the
// queue's row, so that the queue's claims run one after another, reads what
// runs and what started, and claims only what the limits allow.
func (a *Adapter) claimControlled(ctx context.Context, req queue.ClaimRequest, kinds []string) (jobs []*queue.Job, err error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return nil, wrapErr("claim jobs", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	if _, err := tx.Exec(ctx, pinnedPlanSQL); err != nil {
		return nil, wrapErr("claim jobs", err)
	}
	var c control
	var run, starts, per, kRun, kStarts, kPer int64
	err = tx.QueryRow(ctx, a.sql.q(lockQueueSQL), req.Queue).Scan(&c.paused, &run, &starts, &per, &c.keyPath, &kRun, &kStarts, &kPer, &c.starts)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// No longer controlled: claim the plain way (the row may come back
		// meanwhile; claimSQL checks again).
		a.controlled.Delete(req.Queue)
		_ = tx.Rollback(ctx)
		return a.Claim(ctx, req)
	case err != nil:
		return nil, wrapErr("claim jobs: lock the queue's limits", err)
	}
	if c.paused {
		return nil, commitEmpty(ctx, tx)
	}
	c.total = limitRow{int(run), int(starts), time.Duration(per) * time.Millisecond}
	c.perKey = limitRow{int(kRun), int(kStarts), time.Duration(kPer) * time.Millisecond}

	var now time.Time
	running := map[string]int{}
	if err := tx.QueryRow(ctx, a.sql.q(runningByKeySQL), req.Queue, c.keyPath).Scan(&now, &running); err != nil {
		return nil, wrapErr("claim jobs: count running jobs", err)
	}
	total := 0
	for _, n := range running {
		total += n
	}
	recent := c.total.recent(c.starts, now)
	allow, opens := c.total.room(total, recent)
	allow = min(allow, req.Limit)
	if allow == 0 {
		a.wakeAt(req.Queue, opens)
		return nil, commitEmpty(ctx, tx)
	}

	var claimed map[string]int // per key, when keys are limited
	if c.keyPath == nil {
		err = queryClaimed(ctx, tx, &jobs, a.sql.q(claimLimitedSQL), req.Queue, allow, req.WorkerID, req.Lease.Milliseconds(), kinds, now)
	} else {
		jobs, claimed, opens, err = a.claimByKey(ctx, tx, req, kinds, &c, now, running, allow)
		a.wakeAt(req.Queue, opens)
	}
	if err != nil {
		return nil, wrapErr("claim jobs", err)
	}
	if c.total.maxStarts > 0 && len(jobs) > 0 {
		log := append(slices.Clone(recent), repeat(now, len(jobs))...)
		log = log[max(0, len(log)-c.total.maxStarts):]
		if _, err := tx.Exec(ctx, a.sql.q(`UPDATE tasq_queues SET starts = $2 WHERE name = $1`), req.Queue, log); err != nil {
			return nil, wrapErr("claim jobs: record starts", err)
		}
	}
	if c.perKey.maxStarts > 0 {
		if err := a.recordKeyStarts(ctx, tx, req.Queue, &c, now, claimed); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, wrapErr("claim jobs", err)
	}
	return jobs, nil
}

// claimByKey claims up to allow jobs of a queue with per-key limits: the
// oldest available jobs (highest priority first) whose keys have room.
func (a *Adapter) claimByKey(ctx context.Context, tx pgx.Tx, req queue.ClaimRequest, kinds []string, c *control, now time.Time,
	running map[string]int, allow int) (jobs []*queue.Job, claimed map[string]int, opens time.Time, err error) {
	keyLogs := map[string][]time.Time{}
	if c.perKey.maxStarts > 0 {
		rows, err := tx.Query(ctx, a.sql.q(keyStartsSQL), req.Queue, now, c.perKey.per.Milliseconds())
		if err != nil {
			return nil, nil, opens, err
		}
		for rows.Next() {
			var k string
			var log []time.Time
			if err := rows.Scan(&k, &log); err != nil {
				rows.Close()
				return nil, nil, opens, err
			}
			keyLogs[k] = c.perKey.recent(log, now)
		}
		if err := rows.Err(); err != nil {
			return nil, nil, opens, err
		}
	}
	room := func(k string) int {
		n, o := c.perKey.room(running[k], keyLogs[k])
		if n == 0 && !o.IsZero() && (opens.IsZero() || o.Before(opens)) {
			opens = o
		}
		return n
	}
	full := []string{}
	for k := range running {
		if room(k) == 0 {
			full = append(full, k)
		}
	}
	for k := range keyLogs {
		if _, counted := running[k]; !counted && room(k) == 0 {
			full = append(full, k)
		}
	}
	// Read a few more candidates than allowed: several may share a key
	// that has room for fewer.
	rows, err := tx.Query(ctx, a.sql.q(candidatesSQL), req.Queue, c.keyPath, kinds, full, min(allow*4, 1000))
	if err != nil {
		return nil, nil, opens, err
	}
	var ids []pgtype.UUID
	claimed = map[string]int{}
	for rows.Next() {
		var id pgtype.UUID
		var k string
		if err := rows.Scan(&id, &k); err != nil {
			rows.Close()
			return nil, nil, opens, err
		}
		if len(ids) < allow && room(k) > 0 {
			ids = append(ids, id)
			running[k]++
			claimed[k]++
			if c.perKey.maxStarts > 0 {
				keyLogs[k] = append(keyLogs[k], now)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, opens, err
	}
	if len(ids) == 0 {
		return nil, claimed, opens, nil
	}
	err = queryClaimed(ctx, tx, &jobs, a.sql.q(claimIDsSQL), ids, req.WorkerID, req.Lease.Milliseconds(), now)
	return jobs, claimed, opens, err
}

// recordKeyStarts adds the claim's starts to the logs of the keys it
// claimed for, and forgets keys that started nothing within the period.
func (a *Adapter) recordKeyStarts(ctx context.Context, tx pgx.Tx, q string, c *control, now time.Time, claimed map[string]int) error {
	keys := make([]string, 0, len(claimed))
	counts := make([]int32, 0, len(claimed))
	for k, n := range claimed {
		keys, counts = append(keys, k), append(counts, int32(n))
	}
	_, err := tx.Exec(ctx, a.sql.q(`
WITH gone AS (
    DELETE FROM tasq_queue_keys WHERE queue = $1 AND last_start <= $2::timestamptz - $3 * interval '1 millisecond'
)
INSERT INTO tasq_queue_keys AS k (queue, key, starts, last_start)
SELECT $1, u.key, array_fill($2::timestamptz, ARRAY[u.n]), $2
FROM unnest($4::text[], $5::int[]) AS u(key, n)
ON CONFLICT (queue, key) DO UPDATE SET
    starts = (SELECT coalesce(array_agg(t ORDER BY t), '{}') FROM (
                 SELECT t FROM unnest(k.starts || EXCLUDED.starts) AS t
                 WHERE t > $2::timestamptz - $3 * interval '1 millisecond'
                 ORDER BY t DESC LIMIT $6) AS newest),
    last_start = EXCLUDED.last_start`), q, now, c.perKey.per.Milliseconds(), keys, counts, c.perKey.maxStarts)
	if err != nil {
		return wrapErr("claim jobs: record the keys' starts", err)
	}
	return nil
}

// commitEmpty ends a controlled claim that took nothing.
func commitEmpty(ctx context.Context, tx pgx.Tx) error {
	if err := tx.Commit(ctx); err != nil {
		return wrapErr("claim jobs", err)
	}
	return nil
}

// queryClaimed runs a claim statement in tx and appends its jobs to jobs.
func queryClaimed(ctx context.Context, tx pgx.Tx, jobs *[]*queue.Job, sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	*jobs, _, _, err = scanClaimed(rows, *jobs)
	return err
}

func repeat(t time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t
	}
	return out
}

// wakeAt wakes the queue's workers at t, when a start limit that kept the
// claim from taking jobs lets the next one start; without it they would
// find out at their next poll. One wake-up per queue is pending at a time.
func (a *Adapter) wakeAt(q string, t time.Time) {
	if t.IsZero() {
		return
	}
	if _, pending := a.rateWakes.LoadOrStore(q, true); pending {
		return
	}
	d := max(time.Until(t), 0) + time.Millisecond
	time.AfterFunc(d, func() {
		a.rateWakes.Delete(q)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.notify(ctx, map[string]bool{q: true})
	})
}

// wakeControlled adds to wake the controlled queues among queues: a job of
// theirs that finished may have made room under a limit, which their
// waiting workers would otherwise find at their next poll.
func (a *Adapter) wakeControlled(queues []string, wake map[string]bool) map[string]bool {
	for _, q := range queues {
		if _, ok := a.controlled.Load(q); ok {
			if wake == nil {
				wake = map[string]bool{}
			}
			wake[q] = true
		}
	}
	return wake
}

// anyControlled reports whether this adapter has seen a paused or limited
// queue, whose workers a finished job may need to wake.
func (a *Adapter) anyControlled() bool {
	seen := false
	a.controlled.Range(func(any, any) bool { seen = true; return false })
	return seen
}
