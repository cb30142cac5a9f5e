package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
)

// claimSQL takes up to $2 available jobs of queue $1, highest priority and
// oldest first, skipping rows other workers have locked, and leases them to
// worker $3 for $4 milliseconds. It uses tasq_jobs_claim_idx.
const claimSQL = `
WITH picked AS (
    SELECT id FROM tasq_jobs
    WHERE state = 'available' AND queue = $1
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE tasq_jobs AS j
SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), attempted_by = $3,
    lease_expires_at = now() + $4 * interval '1 millisecond'
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempt, j.max_retries, j.retry_delay_ms, j.timeout_ms, j.dispatched_at`

// Claim implements queue.Source.
func (a *Adapter) Claim(ctx context.Context, queueName, workerID string, limit int, lease time.Duration) ([]*queue.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	jobs := make([]*queue.Job, 0, limit)
	err := a.pinned(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				j                  queue.Job
				id                 pgtype.UUID
				retryMS, timeoutMS int64
				attempt, retries   int32
			)
			if err := rows.Scan(&id, &j.Kind, &j.Queue, &j.Payload, &j.Priority, &attempt, &retries, &retryMS, &timeoutMS, &j.DispatchedAt); err != nil {
				return err
			}
			j.ID = uuid.UUID(id.Bytes)
			j.Attempt, j.MaxRetries = int(attempt), int(retries)
			j.RetryDelay = time.Duration(retryMS) * time.Millisecond
			j.Timeout = time.Duration(timeoutMS) * time.Millisecond
			jobs = append(jobs, &j)
		}
		return nil
	}, claimSQL, queueName, limit, workerID, lease.Milliseconds())
	if err != nil {
		return nil, wrapErr("claim jobs", err)
	}
	return jobs, nil
}

// finishSQL applies a batch of outcomes in one statement (after
// pinnedPlanSQL, which makes it one primary-key lookup per outcome; the state
// check is written state::text so that the running-jobs index cannot be
// chosen instead). The WHERE clause is
// the completion guard: only the attempt that worker $7 claimed, and only
// while the job is still running, can be finished. Handing a job back
// (available/scheduled) un-counts the attempt. It returns one row: how many
// outcomes applied, and the queues that got jobs back (to wake their workers).
const finishSQL = `
WITH done AS (
    UPDATE tasq_jobs AS j SET
        state = u.state::tasq_job_state,
        result = CASE WHEN u.state = 'completed' THEN NULLIF(u.result, '')::jsonb ELSE j.result END,
        attempt = CASE WHEN u.state IN ('available', 'scheduled') THEN j.attempt - 1 ELSE j.attempt END,
        run_at = CASE WHEN u.state IN ('retryable', 'scheduled') THEN now() + u.delay_ms * interval '1 millisecond' ELSE j.run_at END,
        finished_at = CASE WHEN u.state IN ('completed', 'failed', 'cancelled') THEN now() END,
        lease_expires_at = NULL,
        errors = CASE WHEN u.error = '' THEN j.errors
                 ELSE j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempt, 'at', now(), 'error', u.error)) END
    FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[])
         AS u(id, attempt, state, result, error, delay_ms)
    WHERE j.id = u.id AND j.attempt = u.attempt AND j.state::text = 'running' AND j.attempted_by = $7
    RETURNING j.queue, j.state
)
SELECT count(*), coalesce(array_agg(DISTINCT queue) FILTER (WHERE state = 'available'), '{}') FROM done`

// pinnedPlanSQL runs, in the same pipeline, before every statement a worker
// repeats (claim, finish, lease renewal, promotion, rescue). It pins their
// plans to index lookups: no hash or merge joins, no sequential or bitmap
// scans. Left to itself, on a table whose statistics are stale (a queue that
// was empty at the last ANALYZE and busy now), the planner picked plans whose
// cost grows with the whole table or with the number of running jobs:
//   - the completion joined every running job with every outcome in a nested
//     loop: 71 s for one batch of 1,000 outcomes against 200,000 running jobs;
//   - the claim hash-joined the picked ids with a sequential scan of the
//     table: 52 ms to claim 100 jobs from a table of 100,000 finished ones,
//     growing with every finished job kept;
//
// where the pinned plans take milliseconds whatever the table holds. The
// settings are local to the pipeline's implicit transaction, so they end with
// the statement (a test checks both the plans and that).
const pinnedPlanSQL = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
    set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)`

// pinned runs sql with pinnedPlanSQL in one round trip and hands its rows to scan.
func (a *Adapter) pinned(ctx context.Context, scan func(pgx.Rows) error, sql string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue(pinnedPlanSQL)
	b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		defer rows.Close()
		if err := scan(rows); err != nil {
			return err
		}
		return rows.Err()
	})
	return a.pool.SendBatch(ctx, b).Close()
}

// Finish implements queue.Source.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	n := len(outcomes)
	ids := make([]pgtype.UUID, n)
	attempts := make([]int32, n)
	states := make([]string, n)
	results := make([]string, n)
	errs := make([]string, n)
	delays := make([]int64, n)
	for i := range outcomes {
		o := &outcomes[i]
		switch o.State {
		case queue.StateCompleted, queue.StateRetryable, queue.StateFailed, queue.StateCancelled, queue.StateAvailable, queue.StateScheduled:
		default:
			return 0, fmt.Errorf("tasq/postgres: outcome for job %s has state %q, which no attempt can end in", o.ID, o.State)
		}
		ids[i], attempts[i], states[i] = pgUUID(o.ID), int32(o.Attempt), string(o.State)
		results[i], errs[i], delays[i] = string(o.Result), o.Error, o.Delay.Milliseconds()
	}
	var applied int64
	var wake []string
	err := a.pinned(ctx, func(rows pgx.Rows) error {
		if !rows.Next() {
			return rows.Err()
		}
		return rows.Scan(&applied, &wake)
	}, finishSQL, ids, attempts, states, results, errs, delays, workerID)
	if err != nil {
		return 0, wrapErr("finish jobs", err)
	}
	if len(wake) > 0 {
		queues := make(map[string]bool, len(wake))
		for _, q := range wake {
			queues[q] = true
		}
		a.notify(ctx, queues)
	}
	return int(applied), nil
}

func (a *Adapter) notify(ctx context.Context, queues map[string]bool) {
	b := &pgx.Batch{}
	for q := range queues {
		b.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, q)
	}
	// A lost notification only delays pick-up until the next poll.
	_ = a.pool.SendBatch(ctx, b).Close()
}

// ExtendLeases implements queue.Source.
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, ids []uuid.UUID, lease time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	err := a.pinned(ctx, func(pgx.Rows) error { return nil }, `
UPDATE tasq_jobs SET lease_expires_at = now() + $3 * interval '1 millisecond'
WHERE id = ANY($1) AND state = 'running' AND attempted_by = $2`, pgUUIDs(ids), workerID, lease.Milliseconds())
	if err != nil {
		return wrapErr("extend leases", err)
	}
	return nil
}

// maintainBatch bounds the rows one maintenance statement moves, so a huge
// backlog is worked off in short transactions.
const maintainBatch = 5000

const promoteSQL = `
WITH due AS (
    SELECT id FROM tasq_jobs
    WHERE state IN ('scheduled', 'retryable') AND run_at <= now()
    ORDER BY run_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE tasq_jobs AS j SET state = 'available'
    FROM due WHERE j.id = due.id
    RETURNING j.queue
)
SELECT q.queue, q.n FROM (SELECT queue, count(*) AS n FROM moved GROUP BY queue) AS q,
       LATERAL (SELECT pg_notify('` + NotifyChannel + `', q.queue)) AS notified`

const rescueSQL = `
WITH expired AS (
    SELECT id FROM tasq_jobs
    WHERE state = 'running' AND lease_expires_at < now()
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE tasq_jobs AS j SET
        state = 'available',
        lease_expires_at = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(),
            'error', 'lease expired: worker ' || coalesce(j.attempted_by, '?') || ' stopped renewing it (crashed or killed?)'))
    FROM expired WHERE j.id = expired.id
    RETURNING j.queue
)
SELECT q.queue, q.n FROM (SELECT queue, count(*) AS n FROM moved GROUP BY queue) AS q,
       LATERAL (SELECT pg_notify('` + NotifyChannel + `', q.queue)) AS notified`

// Maintain implements queue.Source: due scheduled/retryable jobs become
// available, and running jobs whose lease expired are handed back (the
// attempt they used still counts). Both notify the queues they touch.
func (a *Adapter) Maintain(ctx context.Context) (promoted, rescued int, err error) {
	if promoted, err = a.countByQueue(ctx, promoteSQL); err != nil {
		return 0, 0, wrapErr("promote due jobs", err)
	}
	if rescued, err = a.countByQueue(ctx, rescueSQL); err != nil {
		return promoted, 0, wrapErr("rescue expired jobs", err)
	}
	return promoted, rescued, nil
}

func (a *Adapter) countByQueue(ctx context.Context, sql string) (int, error) {
	total := 0
	err := a.pinned(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var q string
			var n int64
			if err := rows.Scan(&q, &n); err != nil {
				return err
			}
			total += int(n)
		}
		return nil
	}, sql, maintainBatch)
	return total, err
}

// pgUUID converts an ID for pgx's native uuid codec: a uuid.UUID would be
// encoded through its driver.Valuer, as text, one reflective call per element.
func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

func pgUUIDs(ids []uuid.UUID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgUUID(id)
	}
	return out
}
