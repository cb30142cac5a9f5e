package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
)

const jobColumns = `id, kind, queue, state::text, priority, payload, result, attempt, max_retries,
    retry_delay_ms, timeout_ms, run_at, dispatched_at, attempted_at, coalesce(attempted_by, ''),
    lease_expires_at, finished_at, errors, errors_omitted, claim_token, tags, meta,
    depends_on, deps_waiting, coalesce(dep_policy, '')`

func scanJob(row pgx.Row) (*queue.JobInfo, error) {
	var (
		j                  queue.JobInfo
		state              string
		result, errs       []byte
		attempt, retries   int32
		retryMS, timeoutMS int64
		omitted            int32
		runAt, dispatched  pgtype.Timestamptz
		meta               []byte
		policy             string
	)
	err := row.Scan(&j.ID, &j.Kind, &j.Queue, &state, &j.Priority, &j.Payload, &result, &attempt, &retries,
		&retryMS, &timeoutMS, &runAt, &dispatched, &j.AttemptedAt, &j.AttemptedBy,
		&j.LeaseExpiresAt, &j.FinishedAt, &errs, &omitted, &j.Token, &j.Tags, &meta,
		&j.DependsOn, &j.Waiting, &policy)
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
	if len(j.Tags) == 0 {
		j.Tags = nil
	}
	if policy != "" {
		j.DepPolicy, _ = queue.ParseDepPolicy(policy)
	}
	if len(meta) > 0 && string(meta) != "{}" {
		j.Meta = meta
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
	j, err := scanJob(a.pool.QueryRow(ctx, a.sql.q(`SELECT `+jobColumns+` FROM tasq_jobs WHERE id = $1`), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", queue.ErrJobNotFound, id)
	}
	if err != nil {
		return nil, wrapErr("get job", err)
	}
	return j, nil
}

// ListJobs implements queue.JobReader: jobs newest first, by ID, f.Limit
// (100 if 0) at a time; f.After continues a listing where its previous page
// ended.
//
// TasQ's job IDs are UUIDv7, ordered by the time they were made, so the
// listing is a walk of the primary key backwards, and `id < After` starts
// the next page where the last one stopped: page 10,000 costs what page 1
// does. A job given an ID of another kind (inserted by hand, say with
// gen_random_uuid()) sorts by that ID. f.Since becomes an ID range as well
// (see sinceFloor), so that a time filter bounds the walk.
//
// State, queue, kind and tag are checked on each row the walk meets, and the walk
// stops after f.Limit matches: it reads about f.Limit divided by the share
// of jobs that match. A filter most jobs pass costs a few index pages; one
// that 1 job in 1,000 passes reads some 100,000 rows for a page of 100
// (about 50 ms); one that no job passes (a kind that does not exist) reads
// the whole table (seconds at ten million jobs). f.Since bounds such a
// walk. For a state only live jobs have (scheduled, available, running,
// retryable) the planner may instead take the jobs from the partial index
// that holds them and sort them: work bounded by the live jobs in that
// state.
func (a *Adapter) ListJobs(ctx context.Context, f queue.ListFilter) ([]*queue.JobInfo, error) {
	q, args, err := listQuery(f)
	if err != nil {
		return nil, err
	}
	var out []*queue.JobInfo
	b := &pgx.Batch{}
	b.Queue(serialPlanSQL)
	b.Queue(a.sql.q(q), args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		return rows.Err()
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, wrapErr("list jobs", err)
	}
	return out, nil
}

// serialPlanSQL runs before the listing in the same pipeline (one implicit
// transaction, which the setting does not outlive): no parallel workers. A
// listing stops after a page of jobs, mostly within a few pages of the index,
// and starting workers took longer than that (15 to 150 ms at ten million
// jobs, depending on the server's load); only the walks that read most of
// the table gained from them (2.5 s instead of 4 s). And an operator's
// listing should not take more than one process's worth of CPU from the
// database the workers use.
const serialPlanSQL = `SELECT set_config('max_parallel_workers_per_gather', '0', true)`

// listQuery builds the statement ListJobs runs for f, and its arguments.
func listQuery(f queue.ListFilter) (string, []any, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.State != "" {
		st, err := queue.ParseJobState(string(f.State))
		if err != nil {
			return "", nil, err
		}
		// A literal, not a parameter: the planner can match it against the
		// partial indexes' predicates in every plan, a cached generic plan
		// included. ParseJobState made sure it is one of the state names.
		where = append(where, "state = '"+string(st)+"'")
	}
	if f.Queue != "" {
		add("queue = $%d", f.Queue)
	}
	if f.Kind != "" {
		add("kind = $%d", f.Kind)
	}
	if f.Tag != "" {
		if err := queue.CheckTag(f.Tag); err != nil {
			return "", nil, err
		}
		add("tags @> ARRAY[$%d::text]", f.Tag)
	}
	if !f.Since.IsZero() {
		if floor := sinceFloor(f.Since); floor != uuid.Nil {
			add("id >= $%d", floor)
		}
		add("dispatched_at >= $%d", f.Since)
	}
	if f.After != uuid.Nil {
		add("id < $%d", f.After)
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
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args))
	return q, args, nil
}

// sinceSlack is how much earlier than ListFilter.Since a job's ID may say it
// was made while its dispatched_at is at or after Since. The Go client makes
// the ID (from its own clock) just before it inserts the row, and the
// database sets dispatched_at (from its clock) when the inserting
// transaction starts; the slack absorbs that gap and the clocks' skew.
// tasq_dispatch() makes the ID inside the transaction, after its start, so
// its IDs are never earlier than dispatched_at.
const sinceSlack = 5 * time.Minute

// sinceFloor returns the smallest UUIDv7 made at since minus sinceSlack:
// every job TasQ dispatched at or after since has an ID at least that large,
// so `id >= sinceFloor(since)` bounds a walk of the primary key without
// losing any of them (dispatched_at >= since still decides). It returns
// uuid.Nil, no bound, for a time before 1970.
func sinceFloor(since time.Time) uuid.UUID {
	ms := since.Add(-sinceSlack).UnixMilli()
	if ms <= 0 {
		return uuid.Nil
	}
	if ms >= 1<<48 {
		ms = 1<<48 - 1
	}
	var id uuid.UUID
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (8 * (5 - i)))
	}
	id[6] = 0x70 // version 7; the rest, the smallest possible, is zero
	return id
}

// changeState moves job id to a new state with set, if its state is one of
// from; otherwise it explains why not.
func (a *Adapter) changeState(ctx context.Context, op string, id uuid.UUID, set string, from ...queue.JobState) error {
	states := make([]string, len(from))
	for i, s := range from {
		states[i] = string(s)
	}
	var q string
	err := a.pool.QueryRow(ctx, a.sql.q(`UPDATE tasq_jobs SET `+set+`
WHERE id = $1 AND state::text = ANY($2) RETURNING queue`), id, states).Scan(&q)
	if err == nil {
		a.notify(ctx, map[string]bool{q: true})
		return nil
	}
	if isUniqueHeld(err) {
		return fmt.Errorf("%w: cannot %s job %s: another job holds its unique key now (it was dispatched while this one was finished)", queue.ErrJobState, op, id)
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
// never finish the new attempt. A job waiting for others (pending), or
// cancelled because one failed, runs now without waiting for them: the
// operator's retry overrides the dependencies. Retrying a dependency
// leaves the jobs that waited for it as they are.
func (a *Adapter) RetryJob(ctx context.Context, id uuid.UUID) error {
	return a.changeState(ctx, "retry", id,
		`state = 'available', attempt = 0, run_at = now(), finished_at = NULL, lease_expires_at = NULL, deps_waiting = NULL`,
		queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled, queue.StatePending)
}

// CancelJob is in cancel.go: it notifies the worker of a running job.

// DeleteJob implements queue.Inspector.
func (a *Adapter) DeleteJob(ctx context.Context, id uuid.UUID) error {
	tag, err := a.pool.Exec(ctx, a.sql.q(`DELETE FROM tasq_jobs WHERE id = $1 AND state <> 'running'`), id)
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
