package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
)

// claimSQL takes up to $2 available jobs of queue $1 (of the kinds in $5,
// when it is not null), highest priority and oldest first, skipping rows
// other workers have locked, and leases them to worker $3 for $4
// milliseconds under a new claim token. It uses tasq_jobs_claim_idx.
// attempt is capped below the integer maximum (and the schema's CHECK) so
// that no stored value can make the claim of a whole queue fail; such a row
// comes back exhausted and the worker fails it.
//
// A queue with a row in tasq_queues (paused or limited) is not claimed here:
// the statement then claims nothing, and Claim, seeing no job, asks whether
// the queue is controlled and takes the controlled path (claimControlled).
// For any other queue the check costs one primary-key lookup of that small
// table, made once per statement.
var claimSQL = claimStatement(claimedColumns, false)

// claimMetaSQL is claimSQL that also returns the jobs' metadata, for
// workers whose middleware reads it (ClaimRequest.Meta).
var claimMetaSQL = claimStatement(claimedMetaColumns, false)

// claimHintedSQL and claimHintedMetaSQL are claimSQL and claimMetaSQL that
// start in the queue's index range after the job of priority $6, run_at $7
// and id $8 (the hint, see claimhint.go): the index scan starts there, so it
// does not read the dead entries of the jobs claimed before.
var (
	claimHintedSQL     = claimStatement(claimedColumns, true)
	claimHintedMetaSQL = claimStatement(claimedMetaColumns, true)
)

// claimStatement is the plain claim returning cols, from the hint if hinted.
func claimStatement(cols string, hinted bool) string {
	hint := ""
	if hinted {
		hint = `
      AND priority = $6 AND (run_at, id) > ($7::timestamptz, $8::uuid)`
	}
	return `
WITH picked AS (
    SELECT id FROM tasq_jobs
    WHERE state = 'available' AND queue = $1 AND ($5::text[] IS NULL OR kind = ANY($5::text[]))` + hint + `
      AND NOT EXISTS (SELECT FROM tasq_queues WHERE name = $1)
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE tasq_jobs AS j SET ` + claimSet("$3", "$4", "now()") + `
FROM picked
WHERE j.id = picked.id
RETURNING ` + cols
}

// controlledSQL says whether a queue is paused or limited.
const controlledSQL = `SELECT EXISTS (SELECT FROM tasq_queues WHERE name = $1)`

// claimSet is the SET list of the UPDATE that leases claimed jobs to worker
// (a parameter) for lease milliseconds under a new claim token, attempted at
// at: the transaction's time, or the controlled claim's clock, with which its
// start limits count.
func claimSet(worker, lease, at string) string {
	return `state = 'running', attempt = least(j.attempt, 2147483645) + 1, claim_token = j.claim_token + 1,
        attempted_at = ` + at + `, attempted_by = ` + worker + `, lease_expires_at = now() + ` + lease + ` * interval '1 millisecond'`
}

// claimedColumns are what a claim returns of each job, as scanClaimed reads
// them; claimedMetaColumns add the metadata (NULL when empty), which only
// workers with middleware ask for: reading it cost about 4% of burn-down.
const (
	claimedColumns     = `j.id, j.claim_token, j.kind, j.queue, j.payload, j.priority, j.attempt, j.max_retries, j.retry_delay_ms, j.timeout_ms, j.dispatched_at, j.run_at`
	claimedMetaColumns = claimedColumns + `, nullif(j.meta, '{}'::jsonb)`
)

// StoresMeta implements queue.MetaStorer: jobs keep their metadata, and a
// claim returns it (Job.Meta).
func (a *Adapter) StoresMeta() bool { return true }

// maxDurationMS is the longest duration, in milliseconds, a time.Duration holds.
const maxDurationMS = int64(math.MaxInt64 / int64(time.Millisecond))

// Claim implements queue.Source. A row whose values the worker cannot use
// (a dispatch time at infinity, a duration beyond time.Duration) comes back
// with Job.Invalid set, so it fails alone.
func (a *Adapter) Claim(ctx context.Context, req queue.ClaimRequest) ([]*queue.Job, error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	var kinds []string // nil: any kind
	if len(req.Kinds) > 0 {
		kinds = req.Kinds
	}
	if _, known := a.controlled.Load(req.Queue); known {
		return a.claimControlled(ctx, req, kinds)
	}
	jobs := make([]*queue.Job, 0, req.Limit)
	stmt, hintedStmt := claimSQL, claimHintedSQL
	if req.Meta {
		stmt, hintedStmt = claimMetaSQL, claimHintedMetaSQL
	}
	// claim runs one claim statement and appends its jobs to jobs.
	claim := func(sql string, args ...any) (last claimKey, lastOK bool, err error) {
		err = a.pinned(ctx, func(rows pgx.Rows) error {
			var err error
			jobs, last, lastOK, err = scanClaimed(rows, jobs)
			return err
		}, a.sql.q(sql), args...)
		return last, lastOK, err
	}
	key := hintKey(req.Queue, kinds)
	if h, ok := a.hints.get(key, time.Now()); ok {
		last, lastOK, err := claim(hintedStmt, req.Queue, req.Limit, req.WorkerID, req.Lease.Milliseconds(), kinds, h.priority, h.runAt, h.id)
		if err != nil {
			return nil, wrapErr("claim jobs", err)
		}
		if len(jobs) == req.Limit {
			if lastOK {
				a.hints.advance(key, last)
			} else {
				a.hints.drop(key) // a run time at infinity: no key to start from
			}
			return jobs, nil
		}
		// The range past the hint ran short: claim the rest from the head.
	}
	headAt := time.Now()
	hinted := len(jobs)
	last, lastOK, err := claim(stmt, req.Queue, req.Limit-hinted, req.WorkerID, req.Lease.Milliseconds(), kinds)
	if err != nil {
		if hinted > 0 {
			// The hinted claim's jobs are leased to this worker: run them.
			// The next claim starts at the head and meets the error again
			// if it lasts.
			a.hints.drop(key)
			a.log.WarnContext(ctx, "tasq/postgres: claiming the rest of a batch from the head of the queue failed; running the jobs claimed before it", "queue", req.Queue, "jobs", hinted, "err", err)
			return jobs, nil
		}
		return nil, wrapErr("claim jobs", err)
	}
	if len(jobs) == req.Limit && len(jobs) > hinted && lastOK {
		a.hints.set(key, last, headAt)
	} else {
		a.hints.drop(key)
	}
	if len(jobs) > 0 {
		return jobs, nil // a controlled queue gives the plain claim nothing
	}
	// Nothing claimed: the queue is empty, or paused or limited. Asking
	// costs a round trip only when there was no work anyway.
	var controlled bool
	if err := a.pool.QueryRow(ctx, a.sql.q(controlledSQL), req.Queue).Scan(&controlled); err != nil {
		return nil, wrapErr("claim jobs: is the queue paused or limited", err)
	}
	if !controlled {
		return jobs, nil
	}
	a.controlled.Store(req.Queue, true)
	return a.claimControlled(ctx, req, kinds)
}

// scanClaimed appends the jobs a claim returned (claimedColumns) to jobs.
// It also returns the last of them in claim order (see claimKey), and
// whether there is one with a finite run time.
func scanClaimed(rows pgx.Rows, jobs []*queue.Job) (_ []*queue.Job, last claimKey, lastOK bool, _ error) {
	// One set of destinations serves every row, so that a row costs only
	// its Job and its payload: kind and queue are read without a copy
	// (DriverBytes, valid until the next row) and kept as one string per
	// distinct name.
	var (
		id                 pgtype.UUID
		token              int64
		kind, qname        pgtype.DriverBytes
		payload, meta      []byte
		priority           int16
		retryMS, timeoutMS int64
		attempt, retries   int32
		dispatched, runAt  pgtype.Timestamptz
		dest               []any
		names              map[string]string
		infinite           bool // a run_at at infinity: no hint
	)
	intern := func(b []byte) string {
		if s, ok := names[string(b)]; ok {
			return s
		}
		if names == nil {
			names = make(map[string]string, 2)
		}
		s := string(b)
		names[s] = s
		return s
	}
	for rows.Next() {
		if dest == nil { // the row description is there once a row is
			dest = []any{&id, &token, &kind, &qname, &payload, &priority, &attempt, &retries, &retryMS, &timeoutMS, &dispatched, &runAt}
			if len(rows.FieldDescriptions()) > 12 {
				dest = append(dest, &meta)
			}
		}
		if err := rows.Scan(dest...); err != nil { // []byte destinations get new slices (nil for NULL)
			return jobs, claimKey{}, false, err
		}
		if runAt.InfinityModifier != pgtype.Finite {
			infinite = true
		} else if k := (claimKey{priority: priority, runAt: runAt.Time, id: uuid.UUID(id.Bytes)}); !lastOK || last.before(k) {
			last, lastOK = k, true
		}
		j := &queue.Job{ID: uuid.UUID(id.Bytes), Token: token, Kind: intern(kind), Queue: intern(qname),
			Payload: payload, Priority: priority, Meta: meta, Attempt: int(attempt), MaxRetries: int(retries)}
		switch {
		case dispatched.InfinityModifier != pgtype.Finite:
			j.Invalid = fmt.Errorf("tasq/postgres: job %s has dispatched_at at infinity, which no job can have", j.ID)
		case retryMS < 0 || retryMS > maxDurationMS || timeoutMS < 0 || timeoutMS > maxDurationMS:
			j.Invalid = fmt.Errorf("tasq/postgres: job %s has retry_delay_ms %d / timeout_ms %d, out of range", j.ID, retryMS, timeoutMS)
		case retries < 0:
			j.Invalid = fmt.Errorf("tasq/postgres: job %s has max_retries %d, below zero", j.ID, retries)
		}
		j.DispatchedAt = dispatched.Time
		j.RetryDelay = time.Duration(retryMS) * time.Millisecond
		j.Timeout = time.Duration(timeoutMS) * time.Millisecond
		jobs = append(jobs, j)
	}
	return jobs, last, lastOK && !infinite, rows.Err()
}

// finishSQL applies a batch of outcomes in one statement (after
// pinnedPlanSQL, which makes it one primary-key lookup per outcome; the
// state compared is a column of u, not a constant, so that the running-jobs
// index, whose predicate is state = 'running', cannot be chosen instead).
// The WHERE clause is the completion guard: only the execution that worker
// $9 claimed under token u.token, and only while the job is still running,
// can finish it.
//
// Every term of the guard compares a column of j with a column of u (the
// worker and the state 'running' ride along in u, behind OFFSET 0 so that
// they are not folded back into constants): none of them is a filter on
// tasq_jobs alone. With `j.attempted_by = $9` as such a filter, statistics
// from an ANALYZE that saw only other workers' rows (any table after a
// burn-down, or a worker that restarted under a new ID) estimate it at one
// row, and the planner, to save the primary-key lookups, made tasq_jobs the
// outer side of the nested loop: a full scan of the primary key with the
// outcome array rescanned for each running job, 1.4 million comparisons and
// 0.8–3 s for one batch of 700 outcomes against 2,000 running jobs, until
// the next autovacuum ANALYZE (the stall of the first seconds of
// `tasq bench --mode continuous` after a burn-down, issue 13). What each outcome does was decided in
// Go (queue.Outcome's methods): finishes sets finished_at, uncount takes a
// handed-back attempt back, delay_ms >= 0 sets run_at. It returns one row:
// how many outcomes applied, the queues that got jobs back (to wake their
// workers), and, when $11, every queue a job of the batch belonged to (a
// finished job makes room in a limited queue).
const finishSQL = `
WITH done AS (
    UPDATE tasq_jobs AS j SET
        state = u.state::tasq_job_state,
        result = CASE WHEN u.result <> '' THEN u.result::jsonb ELSE j.result END,
        attempt = j.attempt - u.uncount,
        run_at = CASE WHEN u.delay_ms >= 0 THEN now() + u.delay_ms * interval '1 millisecond' ELSE j.run_at END,
        finished_at = CASE WHEN u.finishes THEN now() END,
        lease_expires_at = NULL,
        errors = CASE WHEN u.error = '' THEN j.errors
                 ELSE tasq_errors_append(j.errors, jsonb_build_object('attempt', j.attempt, 'at', now(), 'error', u.error), $10) END,
        errors_omitted = j.errors_omitted + CASE WHEN u.error <> '' AND jsonb_array_length(j.errors) >= $10 THEN 1 ELSE 0 END
    FROM (SELECT u.*, $9::text AS worker, 'running'::tasq_job_state AS held_state
          FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bool[], $8::int[])
               AS u(id, token, state, result, error, delay_ms, finishes, uncount)
          OFFSET 0) AS u
    WHERE j.id = u.id AND j.claim_token = u.token AND j.state = u.held_state AND j.attempted_by = u.worker
    RETURNING j.queue, j.state
)
SELECT count(*), coalesce(array_agg(DISTINCT queue) FILTER (WHERE state = 'available'), '{}'),
       coalesce(array_agg(DISTINCT queue) FILTER (WHERE $11), '{}') FROM done`

// finishCompletedSQL is finishSQL for a batch whose every outcome is a
// completion without an error: the common case under load. Only the IDs,
// the tokens and the results (an empty string for none) travel, and the rest of the SET
// list is constants: for 1,000 outcomes 7.2 ms without results and 7.6 ms
// with them, against 8.6 and 8.9 ms with finishSQL (medians of 30), about
// 1.3 µs of PostgreSQL time per job. The guard is finishSQL's, with the
// worker and the state riding along for the same reason. It runs only when
// some queue is paused or limited: no job goes back to available, so only
// the touched queues come back, for wakeControlled.
const finishCompletedSQL = `
WITH done AS (` + finishCompletedUpdate + `
    RETURNING j.queue
)
SELECT count(*), '{}'::text[], coalesce(array_agg(DISTINCT queue), '{}') FROM done`

// finishCompletedQuietSQL is finishCompletedSQL when no queue is paused or
// limited, so that no touched queue needs to be known: the bare UPDATE,
// whose command tag counts the jobs it completed, with no RETURNING rows
// gathered and aggregated. Both take the same arguments.
const finishCompletedQuietSQL = finishCompletedUpdate

// finishCompletedUpdate is the UPDATE of finishCompletedSQL.
const finishCompletedUpdate = `
    UPDATE tasq_jobs AS j SET state = 'completed', finished_at = now(), lease_expires_at = NULL,
        result = CASE WHEN u.result <> '' THEN u.result::jsonb ELSE j.result END
    FROM (SELECT u.*, $3::text AS worker, 'running'::tasq_job_state AS held_state
          FROM unnest($1::uuid[], $2::bigint[], $4::text[]) AS u(id, token, result)
          OFFSET 0) AS u
    WHERE j.id = u.id AND j.claim_token = u.token AND j.state = u.held_state AND j.attempted_by = u.worker`

// onlyCompletions reports whether every outcome is a completion without an
// error, which finishCompletedSQL applies.
func onlyCompletions(outcomes []queue.Outcome) bool {
	for i := range outcomes {
		if o := &outcomes[i]; o.State != queue.StateCompleted || o.Error != "" {
			return false
		}
	}
	return true
}

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

// pinnedExec is pinned for a statement that returns no rows: it returns
// the number of rows the statement changed.
func (a *Adapter) pinnedExec(ctx context.Context, sql string, args ...any) (int64, error) {
	b := &pgx.Batch{}
	b.Queue(pinnedPlanSQL)
	var n int64
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error {
		n = ct.RowsAffected()
		return nil
	})
	err := a.pool.SendBatch(ctx, b).Close()
	return n, err
}

// Finish implements queue.Source. When the batch statement fails on a value
// PostgreSQL cannot store (SQLSTATE classes 22 and 23), the outcomes are
// written one by one, and each one that still fails is stored as
// queue.FailedUnstorable, so a poison outcome fails its own job only.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	outs := make([]queue.Outcome, len(outcomes))
	for i, o := range outcomes {
		outs[i] = queue.Storable(o)
	}
	outcomes = outs
	n, err := a.finish(ctx, workerID, outcomes)
	if err == nil {
		a.finished(outcomes) // Wait: name the finished jobs for waiting clients (await.go)
	}
	if err == nil || !isDataError(err) {
		return n, err
	}
	applied := 0
	for _, o := range outcomes {
		n, err := a.finish(ctx, workerID, []queue.Outcome{o})
		if err != nil && isDataError(err) {
			n, err = a.finish(ctx, workerID, []queue.Outcome{queue.FailedUnstorable(o, err)})
		}
		if err != nil {
			return applied, err
		}
		applied += n
	}
	a.finished(outcomes) // Wait (await.go)
	return applied, nil
}

// isDataError reports whether err is PostgreSQL refusing a value: data
// exceptions (class 22) and integrity violations (class 23).
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

func (a *Adapter) finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	// Rows are locked in array order; the completion and the lease renewal
	// both go by ID, so that they never wait on each other in a cycle (a
	// deadlock the chaos suite found when one followed a map's order).
	// Finish hands over a slice of its own, which is sorted in place.
	slices.SortFunc(outcomes, func(x, y queue.Outcome) int {
		return compareLease(queue.Lease{ID: x.ID, Token: x.Token}, queue.Lease{ID: y.ID, Token: y.Token})
	})
	n := len(outcomes)
	ids := make([]pgtype.UUID, n)
	tokens := make([]int64, n)
	var applied int64
	var wake, touched []string
	anyControlled := a.anyControlled()
	scan := func(rows pgx.Rows) error {
		if !rows.Next() {
			return rows.Err()
		}
		return rows.Scan(&applied, &wake, &touched)
	}
	if onlyCompletions(outcomes) {
		results := make([]string, n)
		for i := range outcomes {
			ids[i], tokens[i], results[i] = pgUUID(outcomes[i].ID), outcomes[i].Token, string(outcomes[i].Result)
		}
		if !anyControlled {
			applied, err := a.pinnedExec(ctx, a.sql.q(finishCompletedQuietSQL), ids, tokens, workerID, results)
			if err != nil {
				return 0, wrapErr("finish jobs", err)
			}
			return int(applied), nil
		}
		if err := a.pinned(ctx, scan, a.sql.q(finishCompletedSQL), ids, tokens, workerID, results); err != nil {
			return 0, wrapErr("finish jobs", err)
		}
		a.afterFinish(ctx, wake, touched)
		return int(applied), nil
	}
	states := make([]string, n)
	results := make([]string, n)
	errs := make([]string, n)
	delays := make([]int64, n)
	finishes := make([]bool, n)
	uncount := make([]int32, n)
	for i := range outcomes {
		o := &outcomes[i]
		ids[i], tokens[i], states[i] = pgUUID(o.ID), o.Token, string(o.State)
		results[i], errs[i] = string(o.Result), o.Error
		delays[i] = -1
		if o.RunsAgain() {
			delays[i] = o.Delay.Milliseconds()
		}
		finishes[i] = o.Finishes()
		if !o.Counts() {
			uncount[i] = 1
		}
	}
	err := a.pinned(ctx, scan, a.sql.q(finishSQL), ids, tokens, states, results, errs, delays, finishes, uncount, workerID, queue.MaxErrorHistory, anyControlled)
	if err != nil {
		return 0, wrapErr("finish jobs", err)
	}
	a.afterFinish(ctx, wake, touched)
	return int(applied), nil
}

// afterFinish wakes the workers of the queues a batch of outcomes gave jobs
// back to (wake) or made room in (touched, limited queues only).
func (a *Adapter) afterFinish(ctx context.Context, wake, touched []string) {
	var queues map[string]bool
	if len(wake) > 0 {
		queues = make(map[string]bool, len(wake))
		for _, q := range wake {
			queues[q] = true
		}
	}
	if queues = a.wakeControlled(touched, queues); len(queues) > 0 {
		a.notify(ctx, queues)
	}
}

func (a *Adapter) notify(ctx context.Context, queues map[string]bool) {
	b := &pgx.Batch{}
	for q := range queues {
		b.Queue(`SELECT pg_notify($1, $2)`, a.sql.channel, q)
	}
	// A lost notification only delays pick-up until the next poll.
	_ = a.pool.SendBatch(ctx, b).Close()
}

// extendSQL renews the leases that worker $3 still holds under their tokens
// and returns the ones it does not. A row another transaction has locked is
// skipped, not waited for: it is a job being completed in a caller's
// transaction (CompleteTx) or by a rescue, and one such transaction held
// open must not stall the renewal of every other lease of the worker. A
// skipped row is not renewed this time; it is reported lost only when the
// statement's snapshot already shows it is not held. Should its lease run
// out while the transaction stays open, a rescue waits for the lock too and
// then finds the job completed (committed) or still claimed (rolled back).
// The worker and the state ride along in l, as in finishSQL, so that stale
// statistics cannot make tasq_jobs the outer side of the join.
const extendSQL = `
WITH l AS MATERIALIZED (SELECT *, $3::text AS worker, 'running'::tasq_job_state AS held_state FROM unnest($1::uuid[], $2::bigint[]) AS l(id, token)),
held AS (
    SELECT j.id FROM tasq_jobs AS j, l
    WHERE j.id = l.id AND j.claim_token = l.token AND j.state = l.held_state AND j.attempted_by = l.worker
    FOR UPDATE OF j SKIP LOCKED
), renewed AS (
    UPDATE tasq_jobs AS j SET lease_expires_at = now() + $4 * interval '1 millisecond'
    FROM held WHERE j.id = held.id
)
SELECT l.id, l.token FROM l WHERE NOT EXISTS (
    SELECT 1 FROM tasq_jobs AS j
    WHERE j.id = l.id AND j.claim_token = l.token AND j.state = l.held_state AND j.attempted_by = l.worker)`

// ExtendLeases implements queue.Source.
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, leases []queue.Lease, d time.Duration) ([]queue.Lease, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	leases = slices.SortedFunc(slices.Values(leases), compareLease) // lock order: see finish
	ids := make([]pgtype.UUID, len(leases))
	tokens := make([]int64, len(leases))
	for i, l := range leases {
		ids[i], tokens[i] = pgUUID(l.ID), l.Token
	}
	var lost []queue.Lease
	err := a.pinned(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var id pgtype.UUID
			var token int64
			if err := rows.Scan(&id, &token); err != nil {
				return err
			}
			lost = append(lost, queue.Lease{ID: uuid.UUID(id.Bytes), Token: token})
		}
		return nil
	}, a.sql.q(extendSQL), ids, tokens, workerID, d.Milliseconds())
	if err != nil {
		return nil, wrapErr("extend leases", err)
	}
	return lost, nil
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
       LATERAL (SELECT pg_notify($2, q.queue)) AS notified`

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
        errors = tasq_errors_append(j.errors, jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'error', replace($3, '{worker}', coalesce(j.attempted_by, '?'))), $4),
        errors_omitted = j.errors_omitted + CASE WHEN jsonb_array_length(j.errors) >= $4 THEN 1 ELSE 0 END
    FROM expired WHERE j.id = expired.id
    RETURNING j.queue
)
SELECT q.queue, q.n FROM (SELECT queue, count(*) AS n FROM moved GROUP BY queue) AS q,
       LATERAL (SELECT pg_notify($2, q.queue)) AS notified`

// Maintain implements queue.Maintainer: due scheduled/retryable jobs become
// available, and running jobs whose lease expired are handed back (the
// attempt they used still counts). Both notify the queues they touch.
func (a *Adapter) Maintain(ctx context.Context) (promoted, rescued int, err error) {
	if promoted, err = a.countByQueue(ctx, promoteSQL); err != nil {
		return 0, 0, wrapErr("promote due jobs", err)
	}
	if rescued, err = a.countByQueue(ctx, rescueSQL, queue.LeaseExpiredText("{worker}"), queue.MaxErrorHistory); err != nil {
		return promoted, 0, wrapErr("rescue expired jobs", err)
	}
	return promoted, rescued, nil
}

func (a *Adapter) countByQueue(ctx context.Context, sql string, args ...any) (int, error) {
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
	}, a.sql.q(sql), append([]any{maintainBatch, a.sql.channel}, args...)...)
	return total, err
}

// compareLease orders by job ID, then token: the order in which statements
// that change many running jobs lock their rows.
func compareLease(x, y queue.Lease) int {
	if c := bytes.Compare(x.ID[:], y.ID[:]); c != 0 {
		return c
	}
	return cmp.Compare(x.Token, y.Token)
}

// pgUUID converts an ID for pgx's native uuid codec: a uuid.UUID would be
// encoded through its driver.Valuer, as text, one reflective call per element.
func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }
