package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

const jobColumns = `id, kind, queue, state, priority, payload, result, attempt, max_retries,
    retry_delay_ms, timeout_ms, run_at, dispatched_at, attempted_at, COALESCE(attempted_by, ''),
    lease_expires_at, finished_at, errors, errors_omitted, claim_token`

type scanner interface{ Scan(dest ...any) error }

// scanJob reads a row of jobColumns. A time it cannot read (an impossible
// date written by hand) is left zero and noted in the error history, so
// that operators still see the row and can retry or delete it.
func scanJob(row scanner) (*queue.JobInfo, error) {
	var (
		j                     queue.JobInfo
		state                 string
		payload, result, errs []byte
		retryMS, timeoutMS    int64
		times                 [5]any // run_at, dispatched_at, attempted_at, lease_expires_at, finished_at
	)
	err := row.Scan(&j.ID, &j.Kind, &j.Queue, &state, &j.Priority, &payload, &result, &j.Attempt, &j.MaxRetries,
		&retryMS, &timeoutMS, &times[0], &times[1], &times[2], &j.AttemptedBy,
		&times[3], &times[4], &errs, &j.ErrorsOmitted, &j.Token)
	if err != nil {
		return nil, err
	}
	var parsed [5]utcTime
	var unreadable []string
	for i, v := range times {
		if err := parsed[i].Scan(v); err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s: %v", timeColumns[i], err))
		}
	}
	j.State = queue.JobState(state)
	j.RetryDelay = time.Duration(retryMS) * time.Millisecond
	j.Timeout = time.Duration(timeoutMS) * time.Millisecond
	j.RunAt, j.DispatchedAt = parsed[0].Time, parsed[1].Time
	j.AttemptedAt, j.LeaseExpiresAt, j.FinishedAt = parsed[2].ptr(), parsed[3].ptr(), parsed[4].ptr()
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
	for _, u := range unreadable {
		j.Errors = append(j.Errors, queue.JobError{Error: queue.CleanErrorText("unreadable " + u)})
	}
	return &j, nil
}

// timeColumns names the times of jobColumns, in order, for messages.
var timeColumns = [5]string{"run_at", "dispatched_at", "attempted_at", "lease_expires_at", "finished_at"}

// GetJob implements queue.JobReader.
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

// ListJobs implements queue.JobReader: newest first.
func (a *Adapter) ListJobs(ctx context.Context, f queue.ListFilter) ([]*queue.JobInfo, error) {
	if f.Tag != "" {
		return nil, nil // this adapter stores no tags (queue.CheckPlainJobs)
	}
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

// changeState moves job id to a new state with set (whose placeholders
// setArgs fill), if its state is one of from; otherwise it explains why not.
func (a *Adapter) changeState(ctx context.Context, op string, id uuid.UUID, set string, setArgs []any, from ...queue.JobState) error {
	states := make([]string, len(from))
	args := append(slices.Clone(setArgs), id.String())
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

// RetryJob implements queue.JobEditor: the job becomes available now with a
// fresh retry budget (attempt 0); its error history and its claim token are
// kept, so an execution of it that still runs somewhere (cancelled while
// running, say) can never finish the new attempt.
func (a *Adapter) RetryJob(ctx context.Context, id uuid.UUID) error {
	err := a.changeState(ctx, "retry", id,
		`state = 'available', attempt = 0, run_at = `+nowSQL+`, finished_at = NULL, lease_expires_at = NULL`, nil,
		queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled)
	if err == nil {
		a.notify(map[string]bool{"": true})
	}
	return err
}

// cancelledText is the error history entry of a job an operator cancelled.
var cancelledText = queue.CleanErrorText("cancelled by operator")

// CancelJob implements queue.JobEditor. A running job is marked cancelled at
// once; its worker learns so when it next renews the lease, and its outcome
// is refused by the completion guard.
func (a *Adapter) CancelJob(ctx context.Context, id uuid.UUID) error {
	return a.changeState(ctx, "cancel", id,
		omitErrorSQL+`,
    errors = `+appendErrorSQL+`,
    state = 'cancelled', finished_at = `+nowSQL+`, lease_expires_at = NULL`, []any{cancelledText},
		queue.StateScheduled, queue.StateAvailable, queue.StateRunning, queue.StateRetryable)
}

// DeleteJob implements queue.JobEditor.
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

// Stats implements queue.StatsReader: job counts per queue and state, states
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
