package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// topPrioritySQL finds the highest priority among a queue's available jobs
// from tasq_jobs_claim_idx alone. claimLevelSQL then locks that priority's
// oldest jobs in index order, so the locking read stops after the rows it
// takes and skips those other workers hold. Going priority by priority needs
// no descending index, which MariaDB before 10.8 ignores.
const (
	topPrioritySQL      = `SELECT MAX(priority) FROM tasq_jobs WHERE queue = ? AND state = 'available'`
	topPriorityBelowSQL = topPrioritySQL + ` AND priority < ?`
	claimLevelSQL       = `
SELECT id, kind, queue, payload, priority, attempt, max_retries, retry_delay_ms, timeout_ms, dispatched_at
FROM tasq_jobs
WHERE queue = ? AND state = 'available' AND priority = ?
ORDER BY run_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED`
)

// Claim implements queue.Source: in one short transaction it locks up to
// limit available jobs of the queue, highest priority and oldest first,
// skipping jobs other workers are claiming, and leases them to workerID.
func (a *Adapter) Claim(ctx context.Context, queueName, workerID string, limit int, lease time.Duration) ([]*queue.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	var jobs []*queue.Job
	err := a.inTx(ctx, func(tx *sql.Tx) error {
		jobs = jobs[:0]
		var below sql.NullInt64
		for len(jobs) < limit {
			var top sql.NullInt64
			var err error
			if below.Valid {
				err = tx.QueryRowContext(ctx, topPriorityBelowSQL, queueName, below.Int64).Scan(&top)
			} else {
				err = tx.QueryRowContext(ctx, topPrioritySQL, queueName).Scan(&top)
			}
			if err != nil {
				return err
			}
			if !top.Valid {
				break
			}
			if jobs, err = claimLevel(ctx, tx, jobs, queueName, top.Int64, limit-len(jobs)); err != nil {
				return err
			}
			below = top
		}
		if len(jobs) == 0 {
			return nil
		}
		args := make([]any, 0, len(jobs)+2)
		args = append(args, workerID, lease.Microseconds())
		for _, j := range jobs {
			args = append(args, j.ID.String())
		}
		res, err := tx.ExecContext(ctx, `
UPDATE tasq_jobs
SET state = 'running', attempt = attempt + 1, attempted_at = `+nowSQL+`, attempted_by = ?,
    lease_expires_at = `+nowSQL+` + INTERVAL ? MICROSECOND
WHERE state = 'available' AND id IN (`+placeholders(len(jobs))+`)`, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n != int64(len(jobs)) {
			return fmt.Errorf("locked %d jobs but could mark only %d running", len(jobs), n)
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr("claim jobs", err)
	}
	for _, j := range jobs {
		j.Attempt++ // the UPDATE counted this claim
	}
	return jobs, nil
}

func claimLevel(ctx context.Context, tx *sql.Tx, jobs []*queue.Job, queueName string, priority int64, n int) ([]*queue.Job, error) {
	rows, err := tx.QueryContext(ctx, claimLevelSQL, queueName, priority, n)
	if err != nil {
		return jobs, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			j                  queue.Job
			retryMS, timeoutMS int64
			dispatched         utcTime
		)
		if err := rows.Scan(&j.ID, &j.Kind, &j.Queue, &j.Payload, &j.Priority, &j.Attempt, &j.MaxRetries,
			&retryMS, &timeoutMS, &dispatched); err != nil {
			return jobs, err
		}
		j.RetryDelay = time.Duration(retryMS) * time.Millisecond
		j.Timeout = time.Duration(timeoutMS) * time.Millisecond
		j.DispatchedAt = dispatched.Time
		jobs = append(jobs, &j)
	}
	return jobs, rows.Err()
}

// finishChunk caps the outcomes of one Finish statement (6 placeholders each).
const finishChunk = 500

// finishHead and finishTail wrap a derived table u(id, attempt, state,
// result, error, delay_us) of outcomes. The WHERE clause is the completion
// guard: only the attempt that worker ? claimed, and only while the job is
// still running, can be finished. Handing a job back (available/scheduled)
// un-counts the attempt. No assignment reads a column another one sets, since
// MySQL does not promise their order in a multi-table UPDATE; JSON_EXTRACT
// keeps the result a JSON value on MySQL.
const (
	finishHead = `UPDATE tasq_jobs AS j JOIN (`
	finishRow  = `SELECT CAST(? AS CHAR(36) CHARACTER SET ascii) COLLATE ascii_bin AS id, CAST(? AS SIGNED) AS attempt,
    CAST(? AS CHAR(16)) AS state, ? AS result, ? AS error, CAST(? AS SIGNED) AS delay_us`
	finishTail = `) AS u ON j.id = u.id
SET j.result = CASE WHEN u.state = 'completed' THEN JSON_EXTRACT(NULLIF(u.result, ''), '$') ELSE j.result END,
    j.errors = CASE WHEN u.error = '' THEN j.errors ELSE JSON_ARRAY_APPEND(j.errors, '$', JSON_OBJECT('attempt', u.attempt, 'at', ` + nowJSONSQL + `, 'error', u.error)) END,
    j.run_at = CASE WHEN u.state IN ('retryable', 'scheduled') THEN ` + nowSQL + ` + INTERVAL u.delay_us MICROSECOND ELSE j.run_at END,
    j.finished_at = CASE WHEN u.state IN ('completed', 'failed', 'cancelled') THEN ` + nowSQL + ` END,
    j.lease_expires_at = NULL,
    j.attempt = CASE WHEN u.state IN ('available', 'scheduled') THEN u.attempt - 1 ELSE u.attempt END,
    j.state = u.state
WHERE j.attempt = u.attempt AND j.state = 'running' AND j.attempted_by = ?`
)

// Finish implements queue.Source. Outcomes are written in one statement
// (per 500), each guarded; it returns how many applied.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	for i := range outcomes {
		o := &outcomes[i]
		switch o.State {
		case queue.StateCompleted, queue.StateRetryable, queue.StateFailed, queue.StateCancelled, queue.StateAvailable, queue.StateScheduled:
		default:
			return 0, fmt.Errorf("tasq/mysql: outcome for job %s has state %q, which no attempt can end in", o.ID, o.State)
		}
		if len(o.Result) > 0 && !json.Valid(o.Result) {
			return 0, fmt.Errorf("tasq/mysql: outcome for job %s has a result that is not valid JSON", o.ID)
		}
	}
	// Lock rows in id order, as ExtendLeases does, so the two cannot deadlock.
	sorted := slices.Clone(outcomes)
	slices.SortFunc(sorted, func(x, y queue.Outcome) int { return strings.Compare(x.ID.String(), y.ID.String()) })
	applied, handedBack := 0, false
	for chunk := range slices.Chunk(sorted, finishChunk) {
		var b strings.Builder
		b.WriteString(finishHead)
		args := make([]any, 0, 6*len(chunk)+1)
		for i, o := range chunk {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			b.WriteString(finishRow)
			args = append(args, o.ID.String(), o.Attempt, string(o.State), string(o.Result), o.Error, o.Delay.Microseconds())
			handedBack = handedBack || o.State == queue.StateAvailable
		}
		b.WriteString(finishTail)
		args = append(args, workerID)
		var n int64
		err := retryDeadlock(ctx, func() error {
			res, err := a.db.ExecContext(ctx, b.String(), args...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return applied, wrapErr("finish jobs", err)
		}
		applied += int(n)
	}
	if handedBack && applied > 0 {
		a.notify(map[string]bool{"": true}) // "": any queue may have work
	}
	return applied, nil
}

// ExtendLeases implements queue.Source.
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, ids []uuid.UUID, lease time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = id.String()
	}
	slices.Sort(keys)
	for chunk := range slices.Chunk(keys, 1000) {
		args := make([]any, 0, len(chunk)+2)
		args = append(args, lease.Microseconds(), workerID)
		for _, k := range chunk {
			args = append(args, k)
		}
		err := retryDeadlock(ctx, func() error {
			_, err := a.db.ExecContext(ctx, `
UPDATE tasq_jobs SET lease_expires_at = `+nowSQL+` + INTERVAL ? MICROSECOND
WHERE state = 'running' AND attempted_by = ? AND id IN (`+placeholders(len(chunk))+`)`, args...)
			return err
		})
		if err != nil {
			return wrapErr("extend leases", err)
		}
	}
	return nil
}

// maintainBatch bounds the rows one maintenance transaction moves, so a huge
// backlog is worked off in short transactions.
const maintainBatch = 5000

const (
	dueSQL = `SELECT id, queue FROM tasq_jobs
WHERE state IN ('scheduled', 'retryable') AND run_at <= ` + nowSQL + `
LIMIT ? FOR UPDATE SKIP LOCKED`
	promoteSQL = `UPDATE tasq_jobs SET state = 'available'
WHERE state IN ('scheduled', 'retryable') AND id IN ({ids})`

	expiredSQL = `SELECT id, queue FROM tasq_jobs
WHERE state = 'running' AND lease_expires_at < ` + nowSQL + `
LIMIT ? FOR UPDATE SKIP LOCKED`
)

// rescueSQL hands expired jobs back; the attempt they used still counts.
const rescueSQL = `UPDATE tasq_jobs SET
    errors = JSON_ARRAY_APPEND(errors, '$', JSON_OBJECT('attempt', attempt, 'at', ` + nowJSONSQL + `,
        'error', CONCAT('lease expired: worker ', COALESCE(attempted_by, '?'), ' stopped renewing it (crashed or killed?)'))),
    state = 'available', lease_expires_at = NULL
WHERE state = 'running' AND id IN ({ids})`

// Maintain implements queue.Source: due scheduled/retryable jobs become
// available, and running jobs whose lease expired are handed back with a
// "lease expired" entry in their error history. Each step locks its rows
// with SKIP LOCKED, so several workers can maintain at once.
func (a *Adapter) Maintain(ctx context.Context) (promoted, rescued int, err error) {
	if promoted, err = a.move(ctx, dueSQL, promoteSQL); err != nil {
		return 0, 0, wrapErr("promote due jobs", err)
	}
	if rescued, err = a.move(ctx, expiredSQL, rescueSQL); err != nil {
		return promoted, 0, wrapErr("rescue expired jobs", err)
	}
	return promoted, rescued, nil
}

// move locks the rows pick selects and applies update (with {ids} for
// their ids) to them, in one transaction; it wakes local subscribers.
func (a *Adapter) move(ctx context.Context, pick, update string) (int, error) {
	var ids []any
	queues := map[string]bool{}
	err := a.inTx(ctx, func(tx *sql.Tx) error {
		ids, queues = ids[:0], map[string]bool{}
		rows, err := tx.QueryContext(ctx, pick, maintainBatch)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id, q string
			if err := rows.Scan(&id, &q); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
			queues[q] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, strings.Replace(update, "{ids}", placeholders(len(ids)), 1), ids...)
		return err
	})
	if err != nil {
		return 0, err
	}
	a.notify(queues)
	return len(ids), nil
}
