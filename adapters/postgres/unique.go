package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasqhq/tasq/queue"
)

// Unique jobs: the key is enforced by tasq_jobs_unique_idx (migration 9), a
// unique index on unique_key over the rows that hold their key. A unique
// dispatch inserts with ON CONFLICT DO NOTHING on that index, so of two
// dispatchers of one key only one row gets in, whatever their timing: the
// second waits for the first's transaction, then conflicts (it committed)
// or inserts (it rolled back). No lookup comes before the insert.

var (
	_ queue.UniqueInserter   = (*Adapter)(nil)
	_ queue.UniqueTxInserter = (*Adapter)(nil)
)

// uniqueBodySQL inserts a batch of jobs, some with unique keys ($12 the
// keys, $13 their states as bits, $14 whether each replaces), and says for
// each what became of it. The guard ($15, $16: tasq_instance and the
// database's name, as in insertTxSQL) keeps a caller's transaction on
// another database from changing anything.
//
//   - ins inserts every job whose key no row holds; ON CONFLICT skips the
//     others (without locking the holder, so a worker finishing it never
//     waits for the dispatch). The rows go in key order, so that two
//     batches with keys in common wait for each other, never deadlock.
//   - rep gives a replacing job's payload, run time, tags and metadata to
//     the holder of its key if it has not started; an UPDATE locks only the
//     rows it changes, so a running holder is left alone and unlocked.
//   - held finds the holder of the key of every other job.
//
// ins, rep and held see the rows committed when the statement began. A
// holder that committed later, after the insert waited for it, is in none
// of them: that job comes back without an ID, and the caller runs the
// statement again for it, with a fresh snapshot that shows the holder (or,
// if it has gone since, lets the job in).
const uniqueBodySQL = `
WITH u AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::int[], $7::bigint[], $8::bigint[],
                         $9::bigint[], $10::text[], $11::text[], $12::bytea[], $13::smallint[], $14::boolean[])
        WITH ORDINALITY AS u(id, kind, queue, priority, payload, max_retries, retry_delay_ms, timeout_ms,
                             delay_ms, tags, meta, unique_key, unique_states, replace, ord)
), guard AS (
    SELECT EXISTS (SELECT 1 FROM tasq_instance WHERE id = $15) AND current_database() = $16 AS ok
), ins AS (
    INSERT INTO tasq_jobs (id, kind, queue, state, priority, payload, max_retries, retry_delay_ms, timeout_ms, run_at,
                           tags, meta, unique_key, unique_states)
    SELECT u.id, u.kind, u.queue,
           CASE WHEN u.delay_ms > 0 THEN 'scheduled' ELSE 'available' END::tasq_job_state,
           u.priority, u.payload::jsonb, u.max_retries, u.retry_delay_ms, u.timeout_ms,
           now() + u.delay_ms * interval '1 millisecond',
           string_to_array(u.tags, ','), u.meta::jsonb, u.unique_key, u.unique_states
    FROM u
    WHERE (SELECT ok FROM guard)
    ORDER BY u.unique_key NULLS FIRST
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND tasq_unique_held(unique_states, state) DO NOTHING
    RETURNING id, queue, state
), rep AS (
    UPDATE tasq_jobs AS j SET
        payload = u.payload::jsonb,
        run_at = now() + u.delay_ms * interval '1 millisecond',
        state = CASE WHEN u.delay_ms <= 0 THEN 'available'
                     WHEN j.state = 'retryable' THEN 'retryable'
                     ELSE 'scheduled' END::tasq_job_state,
        tags = string_to_array(u.tags, ','),
        meta = u.meta::jsonb
    FROM u
    WHERE u.replace AND (SELECT ok FROM guard)
      AND j.unique_key = u.unique_key AND tasq_unique_held(j.unique_states, j.state)
      AND j.state IN ('scheduled', 'available', 'retryable')
      AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = u.id)
    RETURNING u.ord, j.id, j.queue, j.state
), res AS (
    SELECT u.ord, coalesce(ins.id, rep.id, held.id) AS id,
           ins.id IS NOT NULL AS inserted, rep.id IS NOT NULL AS replaced,
           coalesce(ins.queue, rep.queue) AS queue, coalesce(ins.state, rep.state) AS state
    FROM u
    LEFT JOIN ins ON ins.id = u.id
    LEFT JOIN rep ON rep.ord = u.ord
    LEFT JOIN LATERAL (
        SELECT j.id FROM tasq_jobs AS j
        WHERE ins.id IS NULL AND rep.id IS NULL
          AND j.unique_key = u.unique_key AND tasq_unique_held(j.unique_states, j.state)
        LIMIT 1
    ) AS held ON true
)`

// uniqueSQL is uniqueBodySQL on the adapter's pool: one row per job, with
// the queue to wake when the job is available now (the caller wakes it
// after the commit).
const uniqueSQL = uniqueBodySQL + `
SELECT ord, coalesce(id::text, ''), inserted, replaced,
       CASE WHEN state = 'available' THEN queue ELSE '' END, (SELECT ok FROM guard)
FROM res ORDER BY ord`

// uniqueTxSQL is uniqueBodySQL in a caller's transaction: it notifies the
// queues with new available jobs ($17, the channel) itself, so that the
// wake-up commits with the jobs.
const uniqueTxSQL = uniqueBodySQL + `, woken AS (
    SELECT pg_notify($17, q.queue) FROM (SELECT DISTINCT queue FROM res WHERE state = 'available') AS q
)
SELECT ord, coalesce(id::text, ''), inserted, replaced, (SELECT count(*) FROM woken)::text, (SELECT ok FROM guard)
FROM res ORDER BY ord`

// maxUniqueRounds bounds how often a unique insert runs again for jobs
// whose key's holder committed while it waited. Each round needs another
// transaction to commit a holder of the same key and that holder to
// vanish again before the next round looks: a few rounds are already
// unlikely.
const maxUniqueRounds = 10

// InsertUnique implements queue.UniqueInserter: jobs with a unique key
// whose key a job holds are not stored, or replace the holder
// (NewJob.UniqueReplace). It runs in a transaction of its own, so the batch
// is stored all or none, and wakes the workers of queues that gained
// available jobs once it has committed.
func (a *Adapter) InsertUnique(ctx context.Context, jobs []queue.NewJob) ([]queue.Dispatched, error) {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return nil, err
	}
	return a.insertUnique(ctx, jobs)
}

func (a *Adapter) insertUnique(ctx context.Context, jobs []queue.NewJob) ([]queue.Dispatched, error) {
	var res []queue.Dispatched
	wake := map[string]bool{}
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		var err error
		res, err = a.uniqueRounds(ctx, jobs, func(ctx context.Context, args []any, each func(func(...any) error) error) error {
			rows, err := tx.Query(ctx, a.sql.q(uniqueSQL), args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			return scanEach(rows.Next, rows.Scan, rows.Err, each)
		}, wake)
		return err
	})
	if err != nil {
		return nil, wrapErr("insert unique jobs", err)
	}
	if len(wake) > 0 && !a.noWake {
		queues := make([]string, 0, len(wake))
		for q := range wake {
			queues = append(queues, q)
		}
		a.waker().wake(queues)
	}
	return res, nil
}

// InsertUniqueTx implements queue.UniqueTxInserter: InsertUnique inside the
// caller's transaction (see InsertTx for the transactions it takes). A key
// held by a job that another transaction stored and has not committed
// makes it wait for that transaction. In a REPEATABLE READ or SERIALIZABLE
// transaction a holder committed after the transaction's snapshot is a
// serialization failure (SQLSTATE 40001): run the transaction again.
func (a *Adapter) InsertUniqueTx(ctx context.Context, tx any, jobs []queue.NewJob) ([]queue.Dispatched, error) {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return nil, err
	}
	query, err := txQuery(ctx, tx)
	if err != nil {
		return nil, err
	}
	return a.insertUniqueTx(ctx, query, jobs)
}

func (a *Adapter) insertUniqueTx(ctx context.Context, query txQueryFunc, jobs []queue.NewJob) ([]queue.Dispatched, error) {
	stmt := a.sql.q(uniqueTxSQL)
	res, err := a.uniqueRounds(ctx, jobs, func(ctx context.Context, args []any, each func(func(...any) error) error) error {
		return query(ctx, stmt, append(args, a.sql.channel), each)
	}, nil)
	if err != nil {
		return nil, wrapErr("insert unique jobs in transaction", err)
	}
	return res, nil
}

// uniqueRounds stores jobs with run, which runs the unique statement with
// the arguments of a batch and calls each with the Scan of every row. Jobs
// of the batch with one key are stored once (queue.DedupeUnique); a job
// whose key's holder the statement could not see is run again, in a new
// statement with a fresh snapshot. wake, when not nil, gathers the queues
// that gained available jobs.
func (a *Adapter) uniqueRounds(ctx context.Context, jobs []queue.NewJob, run func(context.Context, []any, func(func(...any) error) error) error, wake map[string]bool) ([]queue.Dispatched, error) {
	rep := queue.DedupeUnique(jobs)
	out := make([]queue.Dispatched, len(jobs))
	var pending []int // the jobs that stand for their key, still without a result
	for i := range jobs {
		if rep[i] == i {
			pending = append(pending, i)
		}
	}
	for round := 0; len(pending) > 0; round++ {
		if round == maxUniqueRounds {
			return nil, fmt.Errorf("the holders of %d unique keys (job %s's among them) kept changing while %d inserts looked for them; dispatch again", len(pending), jobs[pending[0]].ID, maxUniqueRounds)
		}
		batch := make([]queue.NewJob, len(pending))
		for k, i := range pending {
			batch[k] = jobs[i]
		}
		var again []int
		otherDB := false
		err := run(ctx, a.uniqueArgs(batch), func(scan func(...any) error) error {
			var (
				ord                int64
				id, queueName      string
				inserted, replaced bool
				ok                 bool
			)
			if err := scan(&ord, &id, &inserted, &replaced, &queueName, &ok); err != nil {
				return err
			}
			if !ok {
				otherDB = true
				return nil
			}
			if ord < 1 || ord > int64(len(pending)) {
				return fmt.Errorf("unique insert returned row %d of %d", ord, len(pending))
			}
			i := pending[ord-1]
			jobID, err := parseID(id)
			if err != nil {
				return err
			}
			if jobID == uuid.Nil {
				again = append(again, i) // its key's holder committed after the snapshot
				return nil
			}
			out[i] = queue.Dispatched{ID: jobID, Duplicate: !inserted, Replaced: replaced}
			if wake != nil && queueName != "" {
				wake[queueName] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if otherDB {
			return nil, errOtherDatabase
		}
		pending = again
	}
	for i := range jobs {
		if r := rep[i]; r != i {
			out[i] = queue.Dispatched{ID: out[r].ID, Duplicate: true}
		}
	}
	return out, nil
}

// uniqueArgs returns the arguments $1..$16 of uniqueBodySQL for jobs.
func (a *Adapter) uniqueArgs(jobs []queue.NewJob) []any {
	keys := make([][]byte, len(jobs))
	states := make([]*int16, len(jobs))
	replace := make([]bool, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		if j.UniqueKey != nil {
			keys[i] = j.UniqueKey
			bits := queue.UniqueStateBits(j.UniqueStates)
			states[i] = &bits
			replace[i] = j.UniqueReplace
		}
	}
	args := append(insertArgs(jobs), tagArgs(jobs)...)
	return append(args, keys, states, replace, pgUUID(a.instance), a.database)
}

// isUniqueHeld reports whether err is a violation of tasq_jobs_unique_idx:
// a job moved into a state in which it would hold a key another job holds
// (an operator's retry of a finished job, say).
func isUniqueHeld(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "tasq_jobs_unique_idx"
}

// parseID reads a job ID the unique statements return as text ("" for
// none).
func parseID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(strings.TrimSpace(s))
	if err != nil {
		return uuid.Nil, fmt.Errorf("read job ID %q: %w", s, err)
	}
	return id, nil
}
