// Package postgres is TasQ's native adapter, on PostgreSQL through pgx/v5 and
// pgxpool.
//
// Jobs live in the tasq_jobs table (see migrations/). Workers claim them in
// batches with FOR UPDATE SKIP LOCKED, wake on LISTEN/NOTIFY on the channel
// tasq_jobs, and hold a lease instead of an open transaction while a job
// runs. Dispatch can join the caller's transaction given as a pgx.Tx, a
// *sql.Tx or a *gorm.DB.
//
// Importing the package registers it as the driver "postgres".
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/queue"
)

// DriverName is the name the adapter registers under.
const DriverName = "postgres"

// NotifyChannel is the LISTEN/NOTIFY channel; each notification's payload is
// the name of a queue that has new available jobs.
const NotifyChannel = "tasq_jobs"

func init() {
	queue.RegisterDriver(DriverName, func(ctx context.Context, url string) (queue.Adapter, error) {
		a, err := New(ctx, url)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return a, nil
	})
}

// Adapter is the PostgreSQL adapter. It implements queue.Adapter and
// queue.Notifier and is safe for concurrent use.
type Adapter struct {
	pool     *pgxpool.Pool
	ownPool  bool
	instance uuid.UUID // tasq_instance.id and current_database(): which database this is
	database string
}

// The capabilities the PostgreSQL adapter has: all of them.
var (
	_ queue.Adapter     = (*Adapter)(nil)
	_ queue.TxInserter  = (*Adapter)(nil)
	_ queue.Notifier    = (*Adapter)(nil)
	_ queue.Maintainer  = (*Adapter)(nil)
	_ queue.JobReader   = (*Adapter)(nil)
	_ queue.JobEditor   = (*Adapter)(nil)
	_ queue.StatsReader = (*Adapter)(nil)
)

// New connects to the database at url (a postgres:// URL or key=value DSN),
// checks that it answers and that the TasQ schema is migrated, and returns an
// adapter that owns its pool.
func New(ctx context.Context, url string) (*Adapter, error) {
	if url == "" {
		return nil, errors.New("tasq/postgres: empty database URL; set TASQ_DATABASE_URL, e.g. postgres://user:pass@127.0.0.1:5432/app")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("tasq/postgres: cannot parse database URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tasq/postgres: %w", err)
	}
	a, err := NewFromPool(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	a.ownPool = true
	return a, nil
}

// NewFromPool returns an adapter on an existing pool, after checking that the
// database answers and is migrated. Close does not close a pool given here.
func NewFromPool(ctx context.Context, pool *pgxpool.Pool) (*Adapter, error) {
	if pool == nil {
		return nil, errors.New("tasq/postgres: NewFromPool got a nil pool")
	}
	if err := pool.Ping(ctx); err != nil {
		c := pool.Config().ConnConfig
		addr := net.JoinHostPort(c.Host, fmt.Sprint(c.Port))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			// The server answered: say what it refused, not that it is down.
			switch pgErr.Code {
			case "3D000":
				return nil, fmt.Errorf("tasq/postgres: PostgreSQL at %s has no database %q: %w; create it (createdb %s) or fix the database in TASQ_DATABASE_URL", addr, c.Database, err, c.Database)
			case "28000", "28P01":
				return nil, fmt.Errorf("tasq/postgres: PostgreSQL at %s refused user %q: %w; check the user and password in TASQ_DATABASE_URL (does the role exist?)", addr, c.User, err)
			}
			return nil, fmt.Errorf("tasq/postgres: PostgreSQL at %s (database %q) refused the connection: %w", addr, c.Database, err)
		}
		return nil, fmt.Errorf("tasq/postgres: cannot reach PostgreSQL at %s (database %q): %w; check TASQ_DATABASE_URL and that the server is running",
			addr, c.Database, err)
	}
	var jobs, instance bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('tasq_jobs') IS NOT NULL, to_regclass('tasq_instance') IS NOT NULL`).Scan(&jobs, &instance); err != nil {
		return nil, fmt.Errorf("tasq/postgres: check schema: %w", err)
	}
	if !jobs {
		return nil, fmt.Errorf("%w (database %q has no tasq_jobs table)", queue.ErrNotMigrated, pool.Config().ConnConfig.Database)
	}
	if !instance {
		return nil, fmt.Errorf("%w (database %q has an older TasQ schema: migration 2 adds claim tokens)", queue.ErrNotMigrated, pool.Config().ConnConfig.Database)
	}
	a := &Adapter{pool: pool}
	var id pgtype.UUID
	if err := pool.QueryRow(ctx, `SELECT id, current_database() FROM tasq_instance`).Scan(&id, &a.database); err != nil {
		return nil, wrapErr("read tasq_instance", err)
	}
	a.instance = uuid.UUID(id.Bytes)
	return a, nil
}

// Name returns "postgres".
func (a *Adapter) Name() string { return DriverName }

// Pool returns the adapter's connection pool.
func (a *Adapter) Pool() *pgxpool.Pool { return a.pool }

// Close closes the pool if the adapter opened it.
func (a *Adapter) Close() {
	if a.ownPool {
		a.pool.Close()
	}
}

// wrapErr names the failed operation and reports a missing table or type as
// queue.ErrNotMigrated, so a dropped schema says what to do.
func wrapErr(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42704") {
		return fmt.Errorf("tasq/postgres: %s: %w (%s)", op, queue.ErrNotMigrated, pgErr.Message)
	}
	return fmt.Errorf("tasq/postgres: %s: %w", op, err)
}
