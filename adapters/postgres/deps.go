package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

// Job dependencies (queue.After; migration 10). A dispatch of jobs that
// wait for others runs two statements in one transaction (the caller's, or
// one of its own):
//
//  1. depsReadSQL reads the states of the dependencies that are not in the
//     batch. A dependency not found is refused (queue.ErrUnknownDependency)
//     and nothing is stored. depsLockSQL then locks those that have not
//     finished, and reads their states again. The lock is what makes the
//     states current: a worker finishing a dependency at the same time
//     either committed before (its new state is read here) or waits for
//     this transaction, and then fires the trigger, which sees the new
//     dependant. A finished dependency needs no lock: its state is final
//     for its dependants (a retry or a delete of a finished job releases
//     nothing).
//  2. depsInsertSQL inserts the batch: a job whose dependencies have all
//     completed (or failed, under DepRun) as any other job; one that
//     still waits as pending, with the dependencies it waits for in
//     deps_waiting; one with a dependency already failed or cancelled,
//     under DepCancel, as cancelled, with the reason in its errors. The
//     same statement marks the locked dependencies has_dependants, so that
//     finishing them fires the trigger tasq_jobs_release_dependants.
//
// The lock is held until the transaction ends: a worker finishing one of
// the dependencies meanwhile waits for it (with the rest of its batch of
// outcomes), so a dispatch in a caller's transaction should commit soon.
//
// From then on the trigger (see the migration) releases or cancels the
// pending jobs in the transaction that finishes each dependency.
//
// A job can only wait for jobs that exist when it is inserted, or that
// come before it in its batch (queue.CheckNewJobs refuses the others): the
// dependencies of a job are older than it, so no cycle can form.

// depsReadSQL is step 1: $1 the dependencies, $2 and $3 the database's
// identity (tasq_instance, current_database(), as in insertTxSQL). It
// returns one row per dependency found, each with the guard, or one row
// with the guard and empty strings when none is.
const depsReadSQL = `
WITH guard AS (
    SELECT EXISTS (SELECT 1 FROM tasq_instance WHERE id = $2) AND current_database() = $3 AS ok
), l AS (
    SELECT j.id, j.state FROM tasq_jobs AS j WHERE j.id = ANY($1::uuid[]) AND (SELECT ok FROM guard)
)
SELECT g.ok, coalesce(l.id::text, ''), coalesce(l.state::text, '') FROM guard AS g LEFT JOIN l ON true`

// depsLockSQL locks the unfinished dependencies $1, in ID order (so that
// two dispatches never wait for each other in a cycle), and returns their
// current states.
const depsLockSQL = `
SELECT true, id::text, state::text FROM tasq_jobs WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE`

// depsInsertSQL is step 2: insertJobs(true)'s arrays $1..$11, then $12 the
// dependencies of each job and $13 those it waits for (IDs joined by
// commas, empty for none), $14 the policy (empty when none), $15 whether
// a later job of the batch waits for it, $16 the state it starts in
// (empty for scheduled or available, by its delay), $17 an error history
// entry (empty for none), $18 and $19 the guard, $20 the channel, $21 whether
// to notify in the statement (a caller's transaction) and $22 the
// dependencies to mark has_dependants (locked by depsLockSQL). It returns the
// number of rows inserted and the queues that gained available jobs,
// separated by newlines (a queue name holds none).
const depsInsertSQL = `
WITH ins AS (
    INSERT INTO tasq_jobs (id, kind, queue, state, priority, payload, max_retries, retry_delay_ms, timeout_ms, run_at,
                           tags, meta, depends_on, deps_waiting, dep_policy, has_dependants, finished_at, errors)
    SELECT u.id, u.kind, u.queue,
           CASE WHEN u.st <> '' THEN u.st WHEN u.delay_ms > 0 THEN 'scheduled' ELSE 'available' END::tasq_job_state,
           u.priority, u.payload::jsonb, u.max_retries, u.retry_delay_ms, u.timeout_ms,
           now() + u.delay_ms * interval '1 millisecond',
           string_to_array(u.tags, ','), u.meta::jsonb,
           string_to_array(nullif(u.deps, ''), ',')::uuid[], string_to_array(nullif(u.waiting, ''), ',')::uuid[],
           nullif(u.policy, ''), u.has_dependants,
           CASE WHEN u.st = 'cancelled' THEN now() END,
           CASE WHEN u.err = '' THEN '[]'::jsonb
                ELSE jsonb_build_array(jsonb_build_object('attempt', 0, 'at', now(), 'error', u.err)) END
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::int[], $7::bigint[], $8::bigint[], $9::bigint[],
                $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::boolean[], $16::text[], $17::text[])
         AS u(id, kind, queue, priority, payload, max_retries, retry_delay_ms, timeout_ms, delay_ms,
              tags, meta, deps, waiting, policy, has_dependants, st, err)
    WHERE EXISTS (SELECT 1 FROM tasq_instance WHERE id = $18) AND current_database() = $19
    RETURNING queue, state
), mark AS (
    UPDATE tasq_jobs SET has_dependants = true
    WHERE id = ANY($22::uuid[]) AND NOT has_dependants AND EXISTS (SELECT 1 FROM ins)
), woken AS (
    SELECT pg_notify($20, q.queue) FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q WHERE $21
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM woken),
       coalesce((SELECT string_agg(DISTINCT queue, E'\n') FROM ins WHERE state = 'available'), '')`

// insertDeps stores a batch in which some job has dependencies, on the
// adapter's pool in a transaction of its own, and wakes the queues that
// gained available jobs once it has committed.
func (a *Adapter) insertDeps(ctx context.Context, jobs []queue.NewJob) error {
	var queues []string
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		var err error
		queues, err = a.insertDepsIn(ctx, pgxTxQuery(tx), jobs, false)
		return err
	})
	if err != nil {
		return wrapDepsErr("insert jobs with dependencies", err)
	}
	if len(queues) > 0 && !a.noWake {
		a.waker().wake(queues)
	}
	return nil
}

// insertDepsTx is insertDeps in a caller's transaction: the wake-up is a
// NOTIFY in the statement, which commits with the jobs.
func (a *Adapter) insertDepsTx(ctx context.Context, query txQueryFunc, jobs []queue.NewJob) error {
	_, err := a.insertDepsIn(ctx, query, jobs, true)
	return wrapDepsErr("insert jobs with dependencies in transaction", err)
}

// wrapDepsErr is wrapErr, leaving the errors of this file as they are.
func wrapDepsErr(op string, err error) error {
	if err == nil || isDepsErr(err) {
		return err
	}
	return wrapErr(op, err)
}

func isDepsErr(err error) bool {
	_, ok := err.(depsError)
	return ok || err == errOtherDatabase
}

// depsError is an error of the dependency checks, returned unwrapped.
type depsError struct{ error }

func (e depsError) Unwrap() error { return e.error }

// errUnknownDeps is the error for dependencies no job has.
func errUnknownDeps(ids []string) error {
	return depsError{fmt.Errorf("%w: no job has the ID %s (never dispatched, deleted or purged, or in another database or schema); nothing was stored",
		queue.ErrUnknownDependency, strings.Join(ids, ", "))}
}

// finished reports whether a job in state st has finished for its
// dependants.
func finished(st queue.JobState) bool {
	return st == queue.StateCompleted || st == queue.StateFailed || st == queue.StateCancelled
}

// pgxTxQuery is txQuery's function for a pgx.Tx.
func pgxTxQuery(tx pgx.Tx) txQueryFunc {
	return func(ctx context.Context, stmt string, args []any, each func(func(...any) error) error) error {
		rows, err := tx.Query(ctx, stmt, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		return scanEach(rows.Next, rows.Scan, rows.Err, each)
	}
}

// insertDepsIn runs the two steps with query, in one transaction.
func (a *Adapter) insertDepsIn(ctx context.Context, query txQueryFunc, jobs []queue.NewJob, notify bool) ([]string, error) {
	index := make(map[uuid.UUID]int, len(jobs))
	for i := range jobs {
		index[jobs[i].ID] = i
	}
	// Step 1: the dependencies outside the batch.
	var outside []string
	seen := map[uuid.UUID]bool{}
	for i := range jobs {
		for _, d := range jobs[i].DependsOn {
			if _, in := index[d]; !in && !seen[d] {
				seen[d] = true
				outside = append(outside, d.String())
			}
		}
	}
	known := make(map[uuid.UUID]queue.JobState, len(outside))
	read := func(stmt string, args []any) error {
		guard := true
		err := query(ctx, a.sql.q(stmt), args, func(scan func(...any) error) error {
			var ok bool
			var id, state string
			if err := scan(&ok, &id, &state); err != nil {
				return err
			}
			if !ok {
				guard = false
				return nil
			}
			if id == "" {
				return nil
			}
			jid, err := parseID(id)
			if err != nil {
				return err
			}
			known[jid] = queue.JobState(state)
			return nil
		})
		if err != nil {
			return err
		}
		if !guard {
			return errOtherDatabase
		}
		return nil
	}
	locked := []string{}
	if len(outside) > 0 {
		if err := read(depsReadSQL, []any{outside, pgUUID(a.instance), a.database}); err != nil {
			return nil, err
		}
		var unknown []string
		for _, id := range outside {
			st, ok := known[uuid.MustParse(id)]
			switch {
			case !ok:
				unknown = append(unknown, id)
			case !finished(st):
				locked = append(locked, id)
			}
		}
		if len(unknown) > 0 {
			return nil, errUnknownDeps(unknown)
		}
	}
	if len(locked) > 0 {
		// A dependency deleted since it was read is missing now: it is
		// reported unknown below.
		for _, id := range locked {
			delete(known, uuid.MustParse(id))
		}
		if err := read(depsLockSQL, []any{locked}); err != nil {
			return nil, err
		}
	}
	// What each job starts as.
	n := len(jobs)
	deps := make([]string, n)
	waiting := make([]string, n)
	policy := make([]string, n)
	parent := make([]bool, n)
	start := make([]string, n)
	errs := make([]string, n)
	state := make([]queue.JobState, n) // the state each job is stored in
	for i := range jobs {
		j := &jobs[i]
		state[i] = queue.StateAvailable
		if j.Delay > 0 {
			state[i] = queue.StateScheduled
		}
		if len(j.DependsOn) == 0 {
			continue
		}
		var unknown, wait []string
		var failedDep uuid.UUID
		var failedState queue.JobState
		for _, d := range j.DependsOn {
			st, ok := known[d]
			if k, in := index[d]; in {
				st, ok = state[k], true
				parent[k] = true
			}
			switch {
			case !ok:
				unknown = append(unknown, d.String())
			case st == queue.StateCompleted:
			case st == queue.StateFailed || st == queue.StateCancelled:
				if j.DepPolicy == queue.DepCancel && failedDep == uuid.Nil {
					failedDep, failedState = d, st
				}
			default:
				wait = append(wait, d.String())
			}
		}
		if len(unknown) > 0 {
			return nil, errUnknownDeps(unknown)
		}
		ids := make([]string, len(j.DependsOn))
		for k, d := range j.DependsOn {
			ids[k] = d.String()
		}
		deps[i], policy[i] = strings.Join(ids, ","), j.DepPolicy.String()
		switch {
		case failedDep != uuid.Nil:
			state[i], start[i] = queue.StateCancelled, string(queue.StateCancelled)
			errs[i] = fmt.Sprintf("dependency %s was %s when the job was dispatched: cancelled, as the job's dependency policy (cancel) says", failedDep, failedState)
		case len(wait) > 0:
			state[i], start[i] = queue.StatePending, string(queue.StatePending)
			waiting[i] = strings.Join(wait, ",")
		}
	}
	// Step 2.
	args := append(insertArgs(jobs), tagArgs(jobs)...)
	args = append(args, deps, waiting, policy, parent, start, errs, pgUUID(a.instance), a.database, a.sql.channel, notify, locked)
	var inserted, woken int64
	var queues string
	err := query(ctx, a.sql.q(depsInsertSQL), args, func(scan func(...any) error) error {
		return scan(&inserted, &woken, &queues)
	})
	if err != nil {
		return nil, err
	}
	if inserted != int64(n) {
		return nil, errOtherDatabase
	}
	if queues == "" {
		return nil, nil
	}
	return strings.Split(queues, "\n"), nil
}
