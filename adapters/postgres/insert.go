package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"

	"github.com/tasqhq/tasq/queue"
)

// insertSQL inserts a batch of jobs in one statement from parallel arrays and
// notifies each queue that gained available jobs. Inside a transaction the
// notifications are delivered only if it commits, together with the rows.
// Times come from the database clock, never the client's.
const insertSQL = `
WITH ins AS (
    INSERT INTO tasq_jobs (id, kind, queue, state, priority, payload, max_retries, retry_delay_ms, timeout_ms, run_at)
    SELECT u.id, u.kind, u.queue,
           CASE WHEN u.delay_ms > 0 THEN 'scheduled' ELSE 'available' END::tasq_job_state,
           u.priority, u.payload::jsonb, u.max_retries, u.retry_delay_ms, u.timeout_ms,
           now() + u.delay_ms * interval '1 millisecond'
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::int[], $7::bigint[], $8::bigint[], $9::bigint[])
         AS u(id, kind, queue, priority, payload, max_retries, retry_delay_ms, timeout_ms, delay_ms)
    RETURNING queue, state
)
SELECT pg_notify('` + NotifyChannel + `', q.queue)
FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q`

func insertArgs(jobs []queue.NewJob) []any {
	n := len(jobs)
	ids := make([]pgtype.UUID, n)
	kinds := make([]string, n)
	queues := make([]string, n)
	prios := make([]int16, n)
	payloads := make([]string, n)
	retries := make([]int32, n)
	retryMS := make([]int64, n)
	timeoutMS := make([]int64, n)
	delayMS := make([]int64, n)
	for i := range jobs {
		j := &jobs[i]
		ids[i] = pgUUID(j.ID)
		kinds[i] = j.Kind
		queues[i] = j.Queue
		prios[i] = j.Priority
		payloads[i] = string(j.Payload)
		retries[i] = int32(j.MaxRetries)
		retryMS[i] = j.RetryDelay.Milliseconds()
		timeoutMS[i] = j.Timeout.Milliseconds()
		delayMS[i] = j.Delay.Milliseconds()
		if j.Delay > 0 && delayMS[i] == 0 {
			delayMS[i] = 1 // a sub-millisecond delay still means "scheduled"
		}
	}
	return []any{ids, kinds, queues, prios, payloads, retries, retryMS, timeoutMS, delayMS}
}

// Insert stores jobs in one statement (one transaction) and wakes workers.
func (a *Adapter) Insert(ctx context.Context, jobs []queue.NewJob) error {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	if _, err := a.pool.Exec(ctx, insertSQL, insertArgs(jobs)...); err != nil {
		return wrapErr("insert jobs", err)
	}
	return nil
}

// pgxExecer is what pgx.Tx, *pgx.Conn and *pgxpool.Conn share for inserts.
type pgxExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// sqlExecer is what *sql.Tx and gorm's connection pools share for inserts.
type sqlExecer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// InsertTx stores jobs inside the caller's transaction. tx may be a pgx.Tx,
// a *sql.Tx (opened through the pgx stdlib driver) or a *gorm.DB (inside
// db.Transaction or after db.Begin; on a plain *gorm.DB the insert commits on
// its own). The jobs, and the NOTIFY that wakes workers, exist only once the
// transaction commits.
func (a *Adapter) InsertTx(ctx context.Context, tx any, jobs []queue.NewJob) error {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	var err error
	switch t := tx.(type) {
	case pgx.Tx:
		_, err = t.Exec(ctx, insertSQL, insertArgs(jobs)...)
	case *sql.Tx:
		_, err = t.ExecContext(ctx, insertSQL, insertArgs(jobs)...)
	case *gorm.DB:
		if t == nil {
			return fmt.Errorf("%w: nil *gorm.DB", queue.ErrTxUnsupported)
		}
		if name := t.Dialector.Name(); name != "postgres" {
			return fmt.Errorf("%w: *gorm.DB uses the %q dialect; the postgres adapter needs a PostgreSQL connection", queue.ErrTxUnsupported, name)
		}
		pool, ok := t.WithContext(ctx).Statement.ConnPool.(sqlExecer)
		if !ok {
			return fmt.Errorf("%w: *gorm.DB connection %T cannot execute statements", queue.ErrTxUnsupported, t.Statement.ConnPool)
		}
		_, err = pool.ExecContext(ctx, insertSQL, insertArgs(jobs)...)
	case pgxExecer:
		_, err = t.Exec(ctx, insertSQL, insertArgs(jobs)...)
	default:
		return fmt.Errorf("%w: %T (the postgres adapter takes pgx.Tx, *sql.Tx or *gorm.DB)", queue.ErrTxUnsupported, tx)
	}
	if err != nil {
		return wrapErr("insert jobs in transaction", err)
	}
	return nil
}
