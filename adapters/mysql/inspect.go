package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

const jobColumns = `id, kind, queue, state, priority, payload, result, attempt, max_retries,
    retry_delay_ms, timeout_ms, run_at, dispatched_at, attempted_at, COALESCE(attempted_by, ''),
    lease_expires_at, finished_at, errors`

type scanner interface{ Scan(dest ...any) error }

func scanJob(row scanner) (*queue.JobInfo, error) {
	var (
		j                                    queue.JobInfo
		state                                string
		payload, result, errs                []byte
		retryMS, timeoutMS                   int64
		runAt, dispatched, attempted, leased utcTime
		finished                             utcTime
	)
	err := row.Scan(&j.ID, &j.Kind, &j.Queue, &state, &j.Priority, &payload, &result, &j.Attempt, &j.MaxRetries,
		&retryMS, &timeoutMS, &runAt, &dispatched, &attempted, &j.AttemptedBy,
		&leased, &finished, &errs)
	if err != nil {
		return nil, err
	}
	j.State = queue.JobState(state)
	j.RetryDelay = time.Duration(retryMS) * time.Millisecond
	j.Timeout = time.Duration(timeoutMS) * time.Millisecond
	j.RunAt, j.DispatchedAt = runAt.Time, dispatched.Time
	j.AttemptedAt, j.LeaseExpiresAt, j.FinishedAt = attempted.ptr(), leased.ptr(), finished.ptr()
	j.Payload = payload
	if len(result) > 0 {
		j.Result = result
	}
	if len(errs) > 0 {
		// A hand-edited errors column should not hide the rest of the row.
		if err := json.Unmarshal(errs, &j.Errors); err != nil {
			j.Errors = []queue.JobError{{Error: "unreadable errors column: " + string(errs)}}
		}
	}
	return &j, nil
}

// GetJob implements queue.Inspector.
func (a *Adapter) GetJob(ctx context.Context, id uuid.UUID) (*queue.JobInfo, error) {
	j, err := scanJob(a.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM tasq_jobs WHERE id = ?`, id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", queue.ErrJobNotFound, id)
	}
	if err != nil {
		return nil, wrapErr("get job", err)
	}
	return j, nil
}

// ListJobs implements queue.Inspector: newest first.
func (a *Adapter) ListJobs(ctx context.Context, f queue.ListFilter) ([]*queue.JobInfo, error) {
	var where []string
	var args []any
	if f.State != "" {
		if _, err := queue.ParseJobState(string(f.State)); err != nil {
			return nil, err
		}
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.Queue != "" {
		where, args = append(where, "queue = ?"), append(args, f.Queue)
	}
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "dispatched_at >= ?"), append(args, formatTime(f.Since))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT ` + jobColumns + ` FROM tasq_jobs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY dispatched_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := a.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrapErr("list jobs", err)
	}
	defer rows.Close()
	var out []*queue.JobInfo
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, wrapErr("list jobs", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("list jobs", err)
	}
	return out, nil
}

// changeState moves job id to a new state with set, if its state is one of
// from; otherwise it explains why not.
func (a *Adapter) changeState(ctx context.Context, op string, id uuid.UUID, set string, from ...queue.JobState) error {
	states := make([]string, len(from))
	args := []any{id.String()}
	for i, s := range from {
		states[i] = string(s)
		args = append(args, string(s))
	}
	res, err := a.db.ExecContext(ctx, `UPDATE tasq_jobs SET `+set+`
WHERE id = ? AND state IN (`+placeholders(len(from))+`)`, args...)
	if err != nil {
		return wrapErr(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrapErr(op, err)
	} else if n == 1 {
		return nil
	}
	j, gerr := a.GetJob(ctx, id)
	if gerr != nil {
		return gerr
	}
	return fmt.Errorf("%w: cannot %s job %s: it is %s (allowed from: %s)", queue.ErrJobState, op, id, j.State, strings.Join(states, ", "))
}

// RetryJob implements queue.Inspector: the job becomes available now with
// its attempt count reset; its error history is kept.
func (a *Adapter) RetryJob(ctx context.Context, id uuid.UUID) error {
	err := a.changeState(ctx, "retry", id,
		`state = 'available', attempt = 0, run_at = `+nowSQL+`, finished_at = NULL, lease_expires_at = NULL`,
		queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled)
	if err == nil {
		a.notify(map[string]bool{"": true})
	}
	return err
}

// CancelJob implements queue.Inspector. A running job is marked cancelled at
// once; its worker's outcome is then discarded by the completion guard.
func (a *Adapter) CancelJob(ctx context.Context, id uuid.UUID) error {
	return a.changeState(ctx, "cancel", id,
		`errors = JSON_ARRAY_APPEND(errors, '$', JSON_OBJECT('attempt', attempt, 'at', `+nowJSONSQL+`, 'error', 'cancelled by operator')),
    state = 'cancelled', finished_at = `+nowSQL+`, lease_expires_at = NULL`,
		queue.StateScheduled, queue.StateAvailable, queue.StateRunning, queue.StateRetryable)
}

// DeleteJob implements queue.Inspector.
func (a *Adapter) DeleteJob(ctx context.Context, id uuid.UUID) error {
	res, err := a.db.ExecContext(ctx, `DELETE FROM tasq_jobs WHERE id = ? AND state <> 'running'`, id.String())
	if err != nil {
		return wrapErr("delete job", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrapErr("delete job", err)
	} else if n == 1 {
		return nil
	}
	j, err := a.GetJob(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: cannot delete job %s while it is %s; cancel it first", queue.ErrJobState, id, j.State)
}

// Stats implements queue.Inspector: job counts per queue and state, states
// in life-cycle order.
func (a *Adapter) Stats(ctx context.Context) ([]queue.QueueStat, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT queue, state, COUNT(*) FROM tasq_jobs GROUP BY queue, state ORDER BY queue, state`)
	if err != nil {
		return nil, wrapErr("stats", err)
	}
	defer rows.Close()
	var out []queue.QueueStat
	for rows.Next() {
		var s queue.QueueStat
		var st string
		if err := rows.Scan(&s.Queue, &st, &s.Count); err != nil {
			return nil, wrapErr("stats", err)
		}
		s.State = queue.JobState(st)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("stats", err)
	}
	return out, nil
}
