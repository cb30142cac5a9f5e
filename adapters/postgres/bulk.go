package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

var _ queue.BulkEditor = (*Adapter)(nil)

// Bulk actions (queue.BulkEditor) change the jobs a filter selects in
// batches of bulkBatch, oldest first: each batch is one statement (in its
// own transaction) that picks the next bulkBatch matching jobs after the
// previous batch's last ID with FOR UPDATE SKIP LOCKED and changes them.
//
//   - The pick walks the primary key onwards from where the last batch
//     stopped (or a partial index of the state, as the planner likes), so a
//     batch never reads the jobs an earlier batch changed.
//   - A batch locks at most bulkBatch rows, for the few milliseconds it
//     takes: workers claiming and finishing other jobs do not wait for an
//     action on ten million rows.
//   - SKIP LOCKED: a row another transaction holds (a worker claiming,
//     finishing or renewing it, maintenance promoting it) is passed over
//     rather than waited for; that transaction is changing it anyway. Its
//     lock order is then never an issue, so a bulk action cannot deadlock
//     with the workers.
//   - The state is checked under the row lock (READ COMMITTED re-reads a
//     row changed since the statement began), so a job that left the
//     filter's state before the batch reached it, such as one a worker
//     claimed after the operator saw the count, is not touched.
//
// Each action keeps the rules of its single-job form in inspect.go and
// cancel.go: see RetryJobs, CancelJobs and DeleteJobs.

// bulkBatch is how many jobs one statement of a bulk action picks.
const bulkBatch = 1000

// bulkFrom are the states each bulk action takes jobs from: the states the
// single-job action accepts, but for cancel, whose running jobs are
// cancelled one by one (CancelJob tells their workers).
var bulkFrom = map[string][]queue.JobState{
	"retry":  {queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled},
	"cancel": {queue.StateScheduled, queue.StateAvailable, queue.StateRetryable},
	"delete": {queue.StateScheduled, queue.StateAvailable, queue.StateRetryable, queue.StateCompleted, queue.StateFailed, queue.StateCancelled},
}

// bulkWhere returns the conditions that select f's jobs, with the filter
// values as arguments numbered from first. The state is a literal, as in
// listQuery, so that the planner can match the partial indexes.
func bulkWhere(f queue.BulkFilter, first int) (string, []any, error) {
	if f.State == "" {
		return "", nil, fmt.Errorf("tasq/postgres: a bulk action needs a state to select jobs by")
	}
	st, err := queue.ParseJobState(string(f.State))
	if err != nil {
		return "", nil, err
	}
	if f.Limit < 0 {
		return "", nil, fmt.Errorf("tasq/postgres: bulk limit %d: use a positive number, or 0 for no cap", f.Limit)
	}
	where := []string{"state = '" + string(st) + "'"}
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, first+len(args)-1))
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
	return strings.Join(where, " AND "), args, nil
}

// CountJobs implements queue.BulkEditor: an exact count, which stops at
// f.Limit when it is set.
func (a *Adapter) CountJobs(ctx context.Context, f queue.BulkFilter) (int, error) {
	where, args, err := bulkWhere(f, 1)
	if err != nil {
		return 0, err
	}
	q := `SELECT count(*) FROM tasq_jobs WHERE ` + where
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q = fmt.Sprintf(`SELECT count(*) FROM (SELECT FROM tasq_jobs WHERE %s LIMIT $%d) AS s`, where, len(args))
	}
	var n int64
	b := &pgx.Batch{}
	b.Queue(serialPlanSQL)
	b.Queue(a.sql.q(q), args...).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, wrapErr("count jobs", err)
	}
	return int(n), nil
}

// bulkPicked is one job a batch picked: whether the batch changed it, and
// what the action needs to know of it.
type bulkPicked struct {
	id      uuid.UUID
	changed bool
	keyed   bool   // retry: it would hold a unique key when available
	queue   string // retry: the queue of a changed job
}

// bulkRun runs an action's batches until no job is left or f.Limit jobs
// changed. batch runs one statement: pick gives its arguments $1 (the ID
// after which to pick), $2 (how many) and the filter's from $3, and the
// conditions to pick by.
func (a *Adapter) bulkRun(ctx context.Context, op string, f queue.BulkFilter,
	batch func(ctx context.Context, where string, args []any) (changed int, picked []bulkPicked, err error)) (int, error) {
	if f.State != "" && !slices.Contains(bulkFrom[op], f.State) {
		from := make([]string, len(bulkFrom[op]))
		for i, s := range bulkFrom[op] {
			from[i] = string(s)
		}
		return 0, fmt.Errorf("%w: cannot %s %s jobs in bulk (allowed from: %s)", queue.ErrJobState, op, f.State, strings.Join(from, ", "))
	}
	where, fargs, err := bulkWhere(f, 3)
	if err != nil {
		return 0, err
	}
	total := 0
	after := uuid.Nil
	for f.Limit == 0 || total < f.Limit {
		n := bulkBatch
		if f.Limit > 0 {
			n = min(n, f.Limit-total)
		}
		changed, picked, err := batch(ctx, where, append([]any{after, n}, fargs...))
		total += changed
		if err != nil {
			return total, wrapErr(op+" jobs", err)
		}
		if len(picked) < n {
			break
		}
		after = picked[len(picked)-1].id
	}
	return total, nil
}

// bulkPickSQL picks a batch: the next $2 jobs after ID $1 that match, locked.
func bulkPickSQL(where, extra string) string {
	return `SELECT id` + extra + ` FROM tasq_jobs WHERE ` + where + ` AND id > $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`
}

// scanPicked reads a batch's rows: id, changed, keyed, queue.
func scanPicked(rows pgx.Rows) ([]bulkPicked, int, error) {
	var out []bulkPicked
	changed := 0
	for rows.Next() {
		var p bulkPicked
		var q *string
		if err := rows.Scan(&p.id, &p.changed, &p.keyed, &q); err != nil {
			return nil, 0, err
		}
		if q != nil {
			p.queue = *q
		}
		if p.changed {
			changed++
		}
		out = append(out, p)
	}
	return out, changed, rows.Err()
}

// RetryJobs implements queue.BulkEditor with RetryJob's rules: the picked
// jobs become available now with attempt 0; their error history and claim
// token stay (an execution still running somewhere holds an older token, so
// the completion guard refuses its outcome), and their queues' workers are
// woken after the batch commits, as RetryJob wakes them.
//
// A unique job that would hold its key when available may collide with
// another job that holds the key now, and one collision would fail the
// whole batch: the statement leaves such jobs alone, and they are retried
// one by one with RetryJob, which leaves a collided one as it is.
func (a *Adapter) RetryJobs(ctx context.Context, f queue.BulkFilter) (int, error) {
	return a.bulkRun(ctx, "retry", f, func(ctx context.Context, where string, args []any) (int, []bulkPicked, error) {
		q := `WITH picked AS (` + bulkPickSQL(where, `, unique_key IS NOT NULL AND tasq_unique_held(unique_states, 'available') AS keyed`) + `),
moved AS (
    UPDATE tasq_jobs AS j SET state = 'available', attempt = 0, run_at = now(), finished_at = NULL, lease_expires_at = NULL
    FROM picked AS p WHERE j.id = p.id AND NOT p.keyed AND (` + where + `)
    RETURNING j.id, j.queue
)
SELECT p.id, m.id IS NOT NULL, p.keyed, m.queue FROM picked AS p LEFT JOIN moved AS m ON m.id = p.id ORDER BY p.id`
		rows, err := a.pool.Query(ctx, a.sql.q(q), args...)
		if err != nil {
			return 0, nil, err
		}
		picked, changed, err := scanPicked(rows)
		if err != nil {
			return 0, nil, err
		}
		queues := map[string]bool{}
		for _, p := range picked {
			if p.changed {
				queues[p.queue] = true
			}
		}
		if len(queues) > 0 {
			a.notify(ctx, queues)
		}
		for _, p := range picked {
			if !p.keyed {
				continue
			}
			switch err := a.RetryJob(ctx, p.id); {
			case err == nil:
				changed++
			case errors.Is(err, queue.ErrJobState), errors.Is(err, queue.ErrJobNotFound):
				// Its key is held, or it changed meanwhile: left as it is.
			default:
				return changed, picked, err
			}
		}
		return changed, picked, nil
	})
}

// bulkCancelSet is the SET list of cancelSQL, which CancelJob runs: the
// bulk cancel writes the same columns and the same error entry.
var bulkCancelSet = func() string {
	s, ok1 := strings.CutPrefix(cancelSQL, "UPDATE tasq_jobs SET ")
	s, ok2 := strings.CutSuffix(s, "\nWHERE id = $1")
	if !ok1 || !ok2 {
		panic("tasq/postgres: cancelSQL changed shape; update bulkCancelSet")
	}
	return s
}()

// CancelJobs implements queue.BulkEditor with CancelJob's rules for jobs
// that are not running: cancelled now, "cancelled by operator" appended to
// the error history, and the cancelled jobs named on the done channel
// (DoneChannelFor) in the batch's transaction, for clients waiting for
// them. No worker holds such a job, so none is told; the claim token is
// left as it is.
func (a *Adapter) CancelJobs(ctx context.Context, f queue.BulkFilter) (int, error) {
	return a.bulkRun(ctx, "cancel", f, func(ctx context.Context, where string, args []any) (int, []bulkPicked, error) {
		q := `WITH picked AS (` + bulkPickSQL(where, "") + `),
moved AS (
    UPDATE tasq_jobs AS j SET ` + bulkCancelSet + `
    FROM picked AS p WHERE j.id = p.id AND (` + where + `)
    RETURNING j.id
)
SELECT p.id, m.id IS NOT NULL, false, NULL::text FROM picked AS p LEFT JOIN moved AS m ON m.id = p.id ORDER BY p.id`
		var picked []bulkPicked
		changed := 0
		err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, a.sql.q(q), args...)
			if err != nil {
				return err
			}
			if picked, changed, err = scanPicked(rows); err != nil {
				return err
			}
			var ids []uuid.UUID
			for _, p := range picked {
				if p.changed {
					ids = append(ids, p.id)
				}
			}
			if len(ids) == 0 {
				return nil
			}
			// Sent at the commit, with the cancels or not at all.
			_, err = tx.Exec(ctx, a.sql.q(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`), a.sql.done, donePayloads(ids))
			return err
		})
		if err != nil {
			return 0, nil, err
		}
		return changed, picked, nil
	})
}

// DeleteJobs implements queue.BulkEditor with DeleteJob's rule: a running
// job is never deleted (the filter cannot name running, and the state is
// checked again under the lock).
func (a *Adapter) DeleteJobs(ctx context.Context, f queue.BulkFilter) (int, error) {
	return a.bulkRun(ctx, "delete", f, func(ctx context.Context, where string, args []any) (int, []bulkPicked, error) {
		q := `WITH picked AS (` + bulkPickSQL(where, "") + `),
gone AS (
    DELETE FROM tasq_jobs AS j USING picked AS p
    WHERE j.id = p.id AND (` + where + `) AND j.state <> 'running'
    RETURNING j.id
)
SELECT p.id, g.id IS NOT NULL, false, NULL::text FROM picked AS p LEFT JOIN gone AS g ON g.id = p.id ORDER BY p.id`
		rows, err := a.pool.Query(ctx, a.sql.q(q), args...)
		if err != nil {
			return 0, nil, err
		}
		picked, changed, err := scanPicked(rows)
		return changed, picked, err
	})
}
