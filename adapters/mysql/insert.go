package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/tasqhq/tasq/queue"
)

// maxKindLength is the width of the kind column, VARCHAR(255).
const maxKindLength = 255

// Limits of one INSERT statement, well below max_allowed_packet (16 MiB on
// MariaDB, 64 MiB on MySQL) and the 65535 placeholders of a prepared
// statement. A larger batch is several statements in one transaction.
const (
	insertMaxRows  = 1000
	insertMaxBytes = 4 << 20
)

const insertHead = `INSERT INTO tasq_jobs
    (id, kind, queue, state, priority, payload, max_retries, retry_delay_ms, timeout_ms, run_at, dispatched_at)
VALUES `

// insertRow is one row of the VALUES list. Times come from the database
// clock: every row of a statement gets the same dispatched_at.
const insertRow = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ` + nowSQL + ` + INTERVAL ? MICROSECOND, ` + nowSQL + `)`

// insertStatement is one multi-row INSERT and its arguments.
type insertStatement struct {
	sql  string
	args []any
}

// insertStatements splits jobs into as few statements as the limits allow.
func insertStatements(jobs []queue.NewJob) []insertStatement {
	var out []insertStatement
	var b strings.Builder
	var args []any
	rows, size := 0, 0
	flush := func() {
		if rows > 0 {
			out = append(out, insertStatement{sql: b.String(), args: args})
		}
		b.Reset()
		args, rows, size = nil, 0, 0
	}
	for i := range jobs {
		j := &jobs[i]
		if rows == insertMaxRows || (rows > 0 && size+len(j.Payload) > insertMaxBytes) {
			flush()
		}
		if rows == 0 {
			b.WriteString(insertHead)
		} else {
			b.WriteString(", ")
		}
		b.WriteString(insertRow)
		state := queue.StateAvailable
		delayUS := j.Delay.Microseconds()
		if j.Delay > 0 {
			state = queue.StateScheduled
			delayUS = max(delayUS, 1) // a sub-microsecond delay still means "scheduled"
		}
		// Strings, never []byte: a binary string cannot become a JSON value.
		args = append(args, j.ID.String(), j.Kind, j.Queue, string(state), j.Priority, string(j.Payload),
			j.MaxRetries, j.RetryDelay.Milliseconds(), j.Timeout.Milliseconds(), delayUS)
		rows++
		size += len(j.Payload) + len(j.Kind) + len(j.Queue) + 200
	}
	flush()
	return out
}

// checkJobs adds MySQL's limits to queue.CheckNewJobs.
func checkJobs(jobs []queue.NewJob) error {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	if err := queue.CheckPlainJobs("mysql", jobs); err != nil {
		return err
	}
	for i := range jobs {
		if n := utf8.RuneCountInString(jobs[i].Kind); n > maxKindLength {
			return fmt.Errorf("%w: kind %.30q... is %d characters; the MySQL kind column holds %d", queue.ErrInvalidConfig, jobs[i].Kind, n, maxKindLength)
		}
	}
	return nil
}

// Insert stores jobs atomically: one multi-row INSERT, or, for batches over
// 1000 jobs or 4 MiB of payload, several inside one transaction.
func (a *Adapter) Insert(ctx context.Context, jobs []queue.NewJob) error {
	if err := checkJobs(jobs); err != nil {
		return err
	}
	stmts := insertStatements(jobs)
	var err error
	if len(stmts) == 1 {
		err = retryDeadlock(ctx, func() error {
			_, err := a.db.ExecContext(ctx, stmts[0].sql, stmts[0].args...)
			return err
		})
	} else {
		err = a.inTx(ctx, func(tx *sql.Tx) error { return execAll(ctx, tx, stmts) })
	}
	if err != nil {
		return wrapErr("insert jobs", err)
	}
	a.notifyInserted(jobs)
	return nil
}

func execAll(ctx context.Context, tx *sql.Tx, stmts []insertStatement) error {
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.sql, s.args...); err != nil {
			return err
		}
	}
	return nil
}

// InsertTx stores jobs inside the caller's transaction, a *sql.Tx begun on
// a MySQL or MariaDB connection (go-sql-driver/mysql) to the database that
// holds tasq_jobs. The jobs exist only once it commits; workers of this
// process find them at their next poll.
func (a *Adapter) InsertTx(ctx context.Context, tx any, jobs []queue.NewJob) error {
	t, ok := tx.(*sql.Tx)
	if !ok || t == nil {
		return fmt.Errorf("%w: %T (the mysql adapter takes a non-nil *sql.Tx begun on a MySQL connection)", queue.ErrTxUnsupported, tx)
	}
	if err := checkJobs(jobs); err != nil {
		return err
	}
	if err := execAll(ctx, t, insertStatements(jobs)); err != nil {
		var me *gomysql.MySQLError
		if !errors.As(err, &me) && !errors.Is(err, sql.ErrTxDone) && ctx.Err() == nil {
			return fmt.Errorf("tasq/mysql: insert jobs in transaction: %w (is the *sql.Tx on a MySQL connection opened with github.com/go-sql-driver/mysql?)", err)
		}
		return wrapErr("insert jobs in transaction", err)
	}
	return nil
}
