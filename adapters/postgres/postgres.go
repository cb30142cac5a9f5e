// Package postgres is TasQ's native adapter, on PostgreSQL through pgx/v5 and
// pgxpool.
//
// Jobs live in the tasq_jobs table (see migrations/). Workers claim them in
// batches with FOR UPDATE SKIP LOCKED, wake on LISTEN/NOTIFY on the channel
// tasq_jobs, and hold a lease instead of an open transaction while a job
// runs. Dispatch can join the caller's transaction given as a pgx.Tx, a
// *sql.Tx or a *gorm.DB.
//
// Behind a transaction pooler such as PgBouncer in pool_mode=transaction,
// where consecutive statements may run on different server connections,
// the adapter sends statements without named prepared statements (unless
// the pooler manages them) and LISTENs on a separate session connection
// given as a listen URL, or, without one, runs in an explicit poll-only
// mode. New detects a pooler by itself; the URL parameters tasq_pooler,
// tasq_listen_url and tasq_wake_poll, or the matching Options, say what to
// do. See Pooler, Wakeups and Setup.
//
// Importing the package registers it as the driver "postgres".
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/postgres/pgschema"
	"github.com/tasqhq/tasq/queue"
)

// DriverName is the name the adapter registers under.
const DriverName = "postgres"

// NotifyChannel is the LISTEN/NOTIFY channel of the TasQ tables in
// DefaultSchema (ChannelFor names the others'); each notification's payload
// is the name of a queue that has new available jobs.
const NotifyChannel = pgschema.DefaultChannel

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

	sql       *statements // the adapter's SQL, qualified for its schema
	setup     Setup
	listenCfg *pgx.ConnConfig // where Subscribe LISTENs; nil in poll-only mode
	log       *slog.Logger

	noWake   bool // WithoutWakeUps
	wakeOnce sync.Once
	wk       *waker // coalesces wake-ups of plain dispatches; started on first use

	await awaitState // Wait: finish notifications and waiting clients (await.go)

	controlled sync.Map   // queue name -> true: queues seen paused or limited (see claimControlled)
	hints      claimHints // where claims of queues with a backlog start (claimhint.go)
	rateWakes  sync.Map   // queue name -> true: a wake-up is pending for a start limit (see wakeAt)
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

	_ queue.CancelListener = (*Adapter)(nil)
	_ queue.JobAwaiter     = (*Adapter)(nil)
)

// New connects to the database at url (a postgres:// URL or key=value DSN),
// checks that it answers and that the TasQ schema is migrated, and returns an
// adapter that owns its pool.
//
// Besides pgx's parameters, url may carry the adapter's own, which are
// removed before pgx and the server see them: tasq_pooler (see Pooler),
// tasq_listen_url (see WithListenURL) and tasq_wake_poll (see
// WithWakePollInterval). opts override them. Behind a transaction pooler,
// when the pool's query exec mode would use named prepared statements that
// the pooler passes through (pgx's default, cache_statement, on PgBouncer
// before 1.21) or describe_exec, New opens the pool in cache_describe mode
// instead. New logs the setup it settled on once (see Setup).
func New(ctx context.Context, url string, opts ...Option) (*Adapter, error) {
	if url == "" {
		return nil, errors.New("tasq/postgres: empty database URL; set TASQ_DATABASE_URL, e.g. postgres://user:pass@127.0.0.1:5432/app")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("tasq/postgres: cannot parse database URL: %w", err)
	}
	var o options
	if err := takeParams(cfg.ConnConfig.RuntimeParams, &o); err != nil {
		return nil, err
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tasq/postgres: %w", err)
	}
	reopen := func(mode pgx.QueryExecMode) (*pgxpool.Pool, error) {
		cfg.ConnConfig.DefaultQueryExecMode = mode
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("tasq/postgres: %w", err)
		}
		return p, nil
	}
	a, err := open(ctx, pool, &o, reopen)
	if err != nil {
		return nil, err
	}
	a.ownPool = true
	return a, nil
}

// NewFromPool returns an adapter on an existing pool, after checking that the
// database answers and is migrated. Close does not close a pool given here.
//
// Behind a transaction pooler (detected, or said with WithPooler) the pool
// must not use named prepared statements that the pooler passes through,
// nor describe_exec: NewFromPool cannot change a pool's query exec mode, so
// it returns an error saying how to build the pool (e.g. with
// default_query_exec_mode=cache_describe).
func NewFromPool(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Adapter, error) {
	if pool == nil {
		return nil, errors.New("tasq/postgres: NewFromPool got a nil pool")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	return open(ctx, pool, &o, nil)
}

// open checks the database behind pool, settles how to talk to it (see
// Setup) and returns the adapter. It owns pool on error when reopen is not
// nil (New's pool): it closes it, and it may replace it by one that reopen
// opens in a safe query exec mode.
func open(ctx context.Context, pool *pgxpool.Pool, o *options, reopen func(pgx.QueryExecMode) (*pgxpool.Pool, error)) (a *Adapter, err error) {
	if reopen != nil {
		defer func() {
			if err != nil {
				pool.Close()
			}
		}()
	}
	if err := ping(ctx, pool); err != nil {
		return nil, err
	}
	probe, err := probePooler(ctx, pool, o.pooler)
	if err != nil {
		return nil, fmt.Errorf("tasq/postgres: probe what is between the adapter and PostgreSQL (%s=%s): %w", ParamPooler, o.pooler, err)
	}
	mode := pool.Config().ConnConfig.DefaultQueryExecMode
	was, switched := mode, false
	if probe.pooler == PoolerTransaction && !safeBehindTransactionPooler(mode, probe.namesManaged) {
		if reopen == nil {
			return nil, fmt.Errorf("tasq/postgres: the pool goes through a transaction pooler (%s), where its query exec mode %q breaks: %s; "+
				"build the pool with default_query_exec_mode=cache_describe in its URL (or ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe), "+
				"or, for PgBouncer 1.21 or later, set max_prepared_statements > 0; if no transaction pooler is in between, say WithPooler(PoolerNone)",
				poolerSource(probe), mode, modeProblem(mode))
		}
		pool.Close()
		if pool, err = reopen(fallbackExecMode); err != nil {
			return nil, err
		}
		mode, switched = fallbackExecMode, true
	}
	sq := newStatements(o.schema)
	var jobs, instance bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL`, sq.object("tasq_jobs"), sq.object("tasq_instance")).Scan(&jobs, &instance); err != nil {
		return nil, fmt.Errorf("tasq/postgres: check schema: %w%s", err, poolerHint(err))
	}
	if !jobs {
		return nil, fmt.Errorf("%w (database %q has no table %s)", queue.ErrNotMigrated, pool.Config().ConnConfig.Database, sq.object("tasq_jobs"))
	}
	if !instance {
		return nil, fmt.Errorf("%w (database %q has an older TasQ schema: migration 2 adds claim tokens)", queue.ErrNotMigrated, pool.Config().ConnConfig.Database)
	}
	a = &Adapter{pool: pool, sql: sq, log: o.log, noWake: o.noWake, hints: claimHints{rescan: claimRescan}}
	var id pgtype.UUID
	if err := pool.QueryRow(ctx, sq.q(`SELECT id, current_database() FROM tasq_instance`)).Scan(&id, &a.database); err != nil {
		return nil, wrapErr("read tasq_instance", err)
	}
	a.instance = uuid.UUID(id.Bytes)
	a.setup = Setup{Pooler: probe.pooler, Detected: probe.detected, ExecMode: mode, Schema: sq.schema, Channel: sq.channel}
	switch {
	case o.listenURL != "":
		if a.listenCfg, err = a.checkListenURL(ctx, o.listenURL); err != nil {
			return nil, err
		}
		a.setup.Wakeups = WakeupsListenURL
	case probe.pooler == PoolerTransaction:
		a.setup.Wakeups = WakeupsPoll
		a.setup.WakePollInterval = o.wakePoll
	default:
		a.listenCfg = pool.Config().ConnConfig
		a.setup.Wakeups = WakeupsListen
	}
	a.logSetup(ctx, switched, was)
	return a, nil
}

// ping checks that the database answers and says what is wrong when not.
func ping(ctx context.Context, pool *pgxpool.Pool) error {
	err := pool.Ping(ctx)
	if err == nil {
		return nil
	}
	c := pool.Config().ConnConfig
	addr := net.JoinHostPort(c.Host, fmt.Sprint(c.Port))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered: say what it refused, not that it is down.
		switch pgErr.Code {
		case "3D000":
			return fmt.Errorf("tasq/postgres: PostgreSQL at %s has no database %q: %w; create it (createdb %s) or fix the database in TASQ_DATABASE_URL", addr, c.Database, err, c.Database)
		case "28000", "28P01":
			return fmt.Errorf("tasq/postgres: PostgreSQL at %s refused user %q: %w; check the user and password in TASQ_DATABASE_URL (does the role exist?)", addr, c.User, err)
		}
		return fmt.Errorf("tasq/postgres: PostgreSQL at %s (database %q) refused the connection: %w", addr, c.Database, err)
	}
	return fmt.Errorf("tasq/postgres: cannot reach PostgreSQL at %s (database %q): %w; check TASQ_DATABASE_URL and that the server is running",
		addr, c.Database, err)
}

// Name returns "postgres".
func (a *Adapter) Name() string { return DriverName }

// Pool returns the adapter's connection pool.
func (a *Adapter) Pool() *pgxpool.Pool { return a.pool }

// Close closes the pool if the adapter opened it.
func (a *Adapter) Close() {
	a.wakeOnce.Do(func() {}) // no waker starts after Close
	if a.wk != nil {
		a.wk.close()
	}
	a.closeAwait()
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
	return fmt.Errorf("tasq/postgres: %s: %w%s", op, err, poolerHint(err))
}
