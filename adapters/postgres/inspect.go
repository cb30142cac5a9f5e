package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
)

const jobColumns = `id, kind, queue, state::text, priority, payload, result, attempt, max_retries,
    retry_delay_ms, timeout_ms, run_at, dispatched_at, attempted_at, coalesce(attempted_by, ''),
    lease_expires_at, finished_at, errors, errors_omitted, claim_token`

func scanJob(row pgx.Row) (*queue.JobInfo, error) {
	var (
		j                  queue.JobInfo
		state              string
		result, errs       []byte
		attempt, retries   int32
		retryMS, timeoutMS int64
		omitted            int32
		runAt, dispatched  pgtype.Timestamptz
	)
	err := row.Scan(&j.ID, &j.Kind, &j.Queue, &state, &j.Priority, &j.Payload, &result, &attempt, &retries,
		&retryMS, &timeoutMS, &runAt, &dispatched, &j.AttemptedAt, &j.AttemptedBy,
		&j.LeaseExpiresAt, &j.FinishedAt, &errs, &omitted, &j.Token)
	if err != nil {
		return nil, err
	}
	// A time at infinity (the column accepts it in rows stored before
	// migration 2) reads as the zero time rather than failing the listing.
	if runAt.InfinityModifier == pgtype.Finite {
		j.RunAt = runAt.Time
	}
	if dispatched.InfinityModifier == pgtype.Finite {
		j.DispatchedAt = dispatched.Time
	}
	j.ErrorsOmitted = int(omitted)
	j.State = queue.JobState(state)
	j.Attempt, j.MaxRetries = int(attempt), int(retries)
	j.RetryDelay = time.Duration(retryMS) * time.Millisecond
	j.Timeout = time.Duration(timeoutMS) * time.Millisecond
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
	j, err := scanJob(a.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM tasq_jobs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
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
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.State != "" {
		if _, err := queue.ParseJobState(string(f.State)); err != nil {
			return nil, err
		}
		add("state = $%d::tasq_job_state", string(f.State))
	}
	if f.Queue != "" {
		add("queue = $%d", f.Queue)
	}
	if f.Kind != "" {
		add("kind = $%d", f.Kind)
	}
	if !f.Since.IsZero() {
		add("dispatched_at >= $%d", f.Since)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT ` + jobColumns + ` FROM tasq_jobs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY dispatched_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := a.pool.Query(ctx, q, args...)
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
	for i, s := range from {
		states[i] = string(s)
	}
	var q string
	err := a.pool.QueryRow(ctx, `UPDATE tasq_jobs SET `+set+`
WHERE id = $1 AND state::text = ANY($2) RETURNING queue`, id, states).Scan(&q)
	if err == nil {
		a.notify(ctx, map[string]bool{q: true})
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return wrapErr(op, err)
	}
	j, gerr := a.GetJob(ctx, id)
	if gerr != nil {
		return gerr
	}
	return fmt.Errorf("%w: cannot %s job %s: it is %s (allowed from: %s)", queue.ErrJobState, op, id, j.State, strings.Join(states, ", "))
}

// RetryJob implements queue.JobEditor: the job becomes available now with
// its attempt count (the retry budget) reset; its error history and its
// claim token are kept, so an execution of it still running somewhere can
// never finish the new attempt.
func (a *Adapter) RetryJob(ctx context.Context, id uuid.UUID) error {
	return a.changeState(ctx, "retry", id,
		`state = 'available', attempt = 0, run_at = now(), finished_at = NULL, lease_expires_at = NULL`,
		queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled)
}

// CancelJob implements queue.Inspector. A running job is marked cancelled at
// once; its worker's outcome is then discarded by the completion guard.
func (a *Adapter) CancelJob(ctx context.Context, id uuid.UUID) error {
	return a.changeState(ctx, "cancel", id,
		`state = 'cancelled', finished_at = now(), lease_expires_at = NULL,
    errors = tasq_errors_append(errors, jsonb_build_object('attempt', attempt, 'at', now(), 'error', 'cancelled by operator'), `+strconv.Itoa(queue.MaxErrorHistory)+`),
    errors_omitted = errors_omitted + CASE WHEN jsonb_array_length(errors) >= `+strconv.Itoa(queue.MaxErrorHistory)+` THEN 1 ELSE 0 END`,
		queue.StateScheduled, queue.StateAvailable, queue.StateRunning, queue.StateRetryable)
}

// DeleteJob implements queue.Inspector.
func (a *Adapter) DeleteJob(ctx context.Context, id uuid.UUID) error {
	tag, err := a.pool.Exec(ctx, `DELETE FROM tasq_jobs WHERE id = $1 AND state <> 'running'`, id)
	if err != nil {
		return wrapErr("delete job", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	j, err := a.GetJob(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: cannot delete job %s while it is %s; cancel it first", queue.ErrJobState, id, j.State)
}

// Stats implements queue.Inspector: job counts per queue and state.
func (a *Adapter) Stats(ctx context.Context) ([]queue.QueueStat, error) {
	rows, err := a.pool.Query(ctx, `SELECT queue, state::text, count(*) FROM tasq_jobs GROUP BY 1, 2 ORDER BY 1, 2`)
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
	return out, rows.Err()
}
