package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pooler says what sits between the adapter and PostgreSQL: it decides how
// statements are sent and how workers are woken. Set it with the URL
// parameter tasq_pooler or WithPooler.
type Pooler string

// The poolers the adapter knows.
const (
	// PoolerAuto, the default, detects a pooler when the adapter starts: a
	// pooler answers with a backend process id (in BackendKeyData) that is
	// not the one the server reports (pg_backend_pid()). A detected pooler
	// is taken to be a transaction pooler, the safe guess; say
	// tasq_pooler=session when it pools sessions.
	PoolerAuto Pooler = "auto"
	// PoolerNone is a direct connection to PostgreSQL (or a TCP proxy that
	// keeps one server connection per client connection).
	PoolerNone Pooler = "none"
	// PoolerSession is a pooler that gives each client connection one server
	// connection until it disconnects (PgBouncer's pool_mode=session): it
	// behaves like PoolerNone.
	PoolerSession Pooler = "session"
	// PoolerTransaction is a pooler that shares server connections between
	// transactions (PgBouncer's pool_mode=transaction): consecutive
	// statements of one client connection may run on different server
	// connections. Named prepared statements that the pooler passes through
	// then clash ("prepared statement ... already exists"), and a LISTEN
	// hears nothing once its transaction ends. Statement pooling
	// (pool_mode=statement) is not supported: dispatch in a transaction
	// needs transactions.
	PoolerTransaction Pooler = "transaction"
)

// Wakeups says how Subscribe learns that jobs became available.
type Wakeups string

// The ways Subscribe can learn of new jobs.
const (
	// WakeupsListen LISTENs on a connection made like the pool's (a direct
	// connection, or one through a session pooler).
	WakeupsListen Wakeups = "listen"
	// WakeupsListenURL LISTENs on a connection to the listen URL (the URL
	// parameter tasq_listen_url or WithListenURL): a session connection to
	// the same database, beside a pool that goes through a transaction
	// pooler.
	WakeupsListenURL Wakeups = "listen_url"
	// WakeupsPoll is the poll-only mode, in force behind a transaction
	// pooler when no listen URL is given: nothing LISTENs, and Subscribe's
	// channel is fed by a short poll (every WakePollInterval) for queues
	// whose next job changed. Pick-up takes up to that interval.
	WakeupsPoll Wakeups = "poll"
)

// DefaultWakePollInterval is how often poll-only mode looks for available
// jobs, unless tasq_wake_poll or WithWakePollInterval says otherwise.
const DefaultWakePollInterval = 100 * time.Millisecond

// The URL parameters the adapter reads, and removes before the URL reaches
// pgx and the server. Any other parameter starting with "tasq_" is refused.
const (
	// ParamPooler is PoolerAuto, PoolerNone, PoolerSession or
	// PoolerTransaction, e.g. tasq_pooler=transaction.
	ParamPooler = "tasq_pooler"
	// ParamListenURL is the URL of a session connection to the same
	// database for LISTEN, URL-encoded when it sits in a URL, e.g.
	// tasq_listen_url=postgres%3A%2F%2Fapp%3Apw%40db%3A5432%2Fapp.
	ParamListenURL = "tasq_listen_url"
	// ParamWakePoll is poll-only mode's interval as a Go duration, e.g.
	// tasq_wake_poll=50ms.
	ParamWakePoll = "tasq_wake_poll"
)

// Option configures New and NewFromPool. Options override the URL's
// parameters.
type Option func(*options)

type options struct {
	pooler    Pooler
	listenURL string
	wakePoll  time.Duration
	log       *slog.Logger
	noWake    bool
	schema    string
}

// WithPooler says what sits between the adapter and PostgreSQL (see Pooler).
func WithPooler(p Pooler) Option { return func(o *options) { o.pooler = p } }

// WithListenURL gives the URL (or key=value DSN) of a session connection to
// the same database, on which Subscribe LISTENs: a direct connection to
// PostgreSQL, or one through a pooler in session mode. Behind a transaction
// pooler it is what keeps wake-ups instant; without it the adapter runs in
// poll-only mode (WakeupsPoll).
func WithListenURL(url string) Option { return func(o *options) { o.listenURL = url } }

// WithWakePollInterval sets how often poll-only mode looks for available
// jobs (DefaultWakePollInterval when not set).
func WithWakePollInterval(d time.Duration) Option { return func(o *options) { o.wakePoll = d } }

// WithoutWakeUps makes plain dispatches (Insert) send no wake-up: workers
// then find new jobs at their next poll. It is for setups whose workers only
// poll, and for measuring what the wake-ups cost (tasq bench --mode notify).
// Transactional dispatch (InsertTx) still notifies with its commit.
func WithoutWakeUps() Option { return func(o *options) { o.noWake = true } }

// WithLogger sets the logger for what the adapter reports by itself: the
// connection setup at start and failures of poll-only mode's poll. The
// default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Setup describes how the adapter talks to its database, as New or
// NewFromPool settled it.
type Setup struct {
	// Pooler is PoolerNone, PoolerSession or PoolerTransaction, never
	// PoolerAuto.
	Pooler Pooler
	// Detected says Pooler was found by detection (tasq_pooler=auto).
	Detected bool
	// ExecMode is the pool's default query exec mode.
	ExecMode pgx.QueryExecMode
	// Wakeups says how Subscribe learns of new jobs.
	Wakeups Wakeups
	// WakePollInterval is poll-only mode's interval (WakeupsPoll only).
	WakePollInterval time.Duration
	// Schema is the PostgreSQL schema of the TasQ tables (see WithSchema),
	// and Channel its LISTEN/NOTIFY channel (see ChannelFor).
	Schema, Channel string
}

// Setup returns how the adapter talks to its database.
func (a *Adapter) Setup() Setup { return a.setup }

// takeParams removes the tasq_ parameters from params (a pgx config's
// RuntimeParams, which would otherwise be sent to the server) into o.
func takeParams(params map[string]string, o *options) error {
	var unknown []string
	for k, v := range params {
		if !strings.HasPrefix(strings.ToLower(k), "tasq_") {
			continue
		}
		delete(params, k)
		switch k {
		case ParamPooler:
			o.pooler = Pooler(v)
		case ParamListenURL:
			o.listenURL = v
		case ParamSchema:
			o.schema = v
		case ParamWakePoll:
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("tasq/postgres: %s=%q is not a duration; write e.g. %s=100ms", ParamWakePoll, v, ParamWakePoll)
			}
			o.wakePoll = d
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("tasq/postgres: unknown URL parameter %s; the adapter knows %s, %s, %s and %s",
			strings.Join(unknown, ", "), ParamPooler, ParamListenURL, ParamWakePoll, ParamSchema)
	}
	return nil
}

// check validates options after the URL and the Option funcs were applied.
func (o *options) check() error {
	switch o.pooler {
	case "":
		o.pooler = PoolerAuto
	case PoolerAuto, PoolerNone, PoolerSession, PoolerTransaction:
	default:
		return fmt.Errorf("tasq/postgres: pooler %q is unknown; use %s, %s, %s or %s (%s=...)",
			o.pooler, PoolerAuto, PoolerNone, PoolerSession, PoolerTransaction, ParamPooler)
	}
	switch {
	case o.wakePoll == 0:
		o.wakePoll = DefaultWakePollInterval
	case o.wakePoll < time.Millisecond:
		return fmt.Errorf("tasq/postgres: wake poll interval %s is below 1ms (%s)", o.wakePoll, ParamWakePoll)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.schema == "" {
		o.schema = DefaultSchema
	}
	return CheckSchema(o.schema)
}

// safeBehindTransactionPooler reports whether pgx's exec mode m works when
// consecutive statements may run on different server connections.
// cache_describe, exec and simple_protocol use only the unnamed statement
// and re-send it with every execution. cache_statement uses named
// statements, which work only when the pooler manages them (PgBouncer 1.21
// and later with max_prepared_statements > 0). describe_exec prepares the
// unnamed statement in one round trip and executes it in the next, which
// may reach another server connection and run whatever statement another
// client left there: never safe.
func safeBehindTransactionPooler(m pgx.QueryExecMode, namesManaged bool) bool {
	switch m {
	case pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol:
		return true
	case pgx.QueryExecModeCacheStatement:
		return namesManaged
	}
	return false
}

// fallbackExecMode is the mode New switches to when the pool's is unsafe
// behind a transaction pooler. Like pgx's default it encodes parameters by
// the types the server describes (binary where it can), so values behave
// as they do on a direct connection, and after the first execution of a
// statement it takes one round trip; it uses only the unnamed statement.
const fallbackExecMode = pgx.QueryExecModeCacheDescribe

// poolerProbe is what probePooler found out.
type poolerProbe struct {
	pooler       Pooler
	detected     bool
	namesManaged bool // named prepared statements are safe (see probeNames)
}

// probePooler finds out, on one connection of pool, what sits in front of
// the server: with want PoolerAuto by comparing the process id in the
// connection's BackendKeyData with pg_backend_pid(), which differ only
// through a pooler; and, behind a transaction pooler whose pool uses named
// prepared statements, whether the pooler manages them. Every query here
// uses the simple protocol, so it leaves nothing behind on a shared server
// connection.
func probePooler(ctx context.Context, pool *pgxpool.Pool, want Pooler) (poolerProbe, error) {
	p := poolerProbe{pooler: want}
	needNames := pool.Config().ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement
	if want != PoolerAuto && (want != PoolerTransaction || !needNames) {
		return p, nil
	}
	c, err := pool.Acquire(ctx)
	if err != nil {
		return p, err
	}
	clean := false
	defer func() {
		if !clean {
			// A probe cut short may leave a transaction or a statement
			// behind: never hand that connection back.
			_ = c.Conn().Close(context.WithoutCancel(ctx))
		}
		c.Release()
	}()
	conn := c.Conn()
	if want == PoolerAuto {
		var serverPID uint32
		if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`, pgx.QueryExecModeSimpleProtocol).Scan(&serverPID); err != nil {
			return p, fmt.Errorf("ask the server for its process id: %w", err)
		}
		p.detected = true
		p.pooler = PoolerNone
		if conn.PgConn().PID() != serverPID {
			p.pooler = PoolerTransaction
		}
	}
	if p.pooler == PoolerTransaction && needNames {
		if p.namesManaged, err = probeNames(ctx, conn); err != nil {
			return p, fmt.Errorf("find out whether the pooler manages prepared statements: %w", err)
		}
	}
	clean = true
	return p, nil
}

// probeNames prepares a statement under a random name inside a
// transaction (so on one server connection) and looks for that name on the
// server. A pooler that passes names through (PgBouncer before 1.21, or
// with max_prepared_statements = 0) leaves it there, and then statements
// that pgx caches under a name on one server connection are missing, or
// already taken, on the next. A pooler that manages prepared statements
// prepares them on the server under names of its own.
func probeNames(ctx context.Context, conn *pgx.Conn) (managed bool, err error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "tasq_probe_" + hex.EncodeToString(b[:])
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		if rerr := tx.Rollback(ctx); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if _, err := conn.Prepare(ctx, name, `SELECT 1`); err != nil {
		return false, err
	}
	var n int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE name = $1`, pgx.QueryExecModeSimpleProtocol, name).Scan(&n)
	if derr := conn.Deallocate(ctx, name); derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return false, err
	}
	return n == 0, nil
}

// checkListenURL parses the listen URL and connects once, to make sure it
// reaches the adapter's own database (the same tasq_instance and database
// name): notifications from another database would never come. A listen
// URL that points at the very pooler the pool goes through is refused.
func (a *Adapter) checkListenURL(ctx context.Context, raw string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("tasq/postgres: cannot parse the listen URL (%s): %w", ParamListenURL, err)
	}
	var ignored options
	if err := takeParams(cfg.RuntimeParams, &ignored); err != nil {
		return nil, err
	}
	main := a.pool.Config().ConnConfig
	where := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if a.setup.Pooler == PoolerTransaction && cfg.Host == main.Host && cfg.Port == main.Port {
		return nil, fmt.Errorf("tasq/postgres: the listen URL goes to %s, the transaction pooler the pool goes through, where LISTEN hears nothing; point %s at PostgreSQL itself (or a pooler in session mode)", where, ParamListenURL)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tasq/postgres: cannot connect to the listen URL (%s, %s): %w", ParamListenURL, where, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var id pgtype.UUID
	var db string
	var serverPID uint32
	err = conn.QueryRow(ctx, a.sql.q(`SELECT id, current_database(), pg_backend_pid() FROM tasq_instance`), pgx.QueryExecModeSimpleProtocol).Scan(&id, &db, &serverPID)
	if err != nil {
		return nil, wrapErr("check the listen URL's database ("+ParamListenURL+")", err)
	}
	if uuid.UUID(id.Bytes) != a.instance || db != a.database {
		return nil, fmt.Errorf("tasq/postgres: the listen URL (%s) reaches database %q at %s, not this adapter's database %q; notifications would never arrive: point it at the same database", ParamListenURL, db, where, a.database)
	}
	if conn.PgConn().PID() != serverPID {
		a.log.WarnContext(ctx, "tasq/postgres: the listen URL goes through a pooler too; LISTEN needs a session connection, so make sure it pools sessions (or point it at PostgreSQL)",
			"listen", where)
	}
	return cfg, nil
}

// logSetup reports once, at start, how the adapter talks to its database.
func (a *Adapter) logSetup(ctx context.Context, switched bool, from pgx.QueryExecMode) {
	s := a.setup
	attrs := []any{"pooler", string(s.Pooler), "detected", s.Detected, "exec_mode", s.ExecMode.String(), "wakeups", string(s.Wakeups),
		"schema", s.Schema}
	if switched {
		attrs = append(attrs, "exec_mode_was", from.String())
	}
	if s.Wakeups == WakeupsListenURL {
		attrs = append(attrs, "listen", net.JoinHostPort(a.listenCfg.Host, fmt.Sprint(a.listenCfg.Port)))
	}
	switch {
	case s.Wakeups == WakeupsPoll:
		attrs = append(attrs, "wake_poll", s.WakePollInterval)
		a.log.WarnContext(ctx, "tasq/postgres: behind a transaction pooler without a listen URL: poll-only mode, no LISTEN; "+
			"workers are woken within wake_poll. Set "+ParamListenURL+" to a direct connection for instant wake-ups", attrs...)
	case s.Pooler == PoolerTransaction:
		a.log.InfoContext(ctx, "tasq/postgres: behind a transaction pooler; LISTEN on the listen URL", attrs...)
	case s.Pooler == PoolerSession:
		a.log.InfoContext(ctx, "tasq/postgres: behind a session pooler", attrs...)
	default:
		a.log.DebugContext(ctx, "tasq/postgres: direct connection", attrs...)
	}
}

// poolerHint adds what to do to errors that a transaction pooler causes
// when named prepared statements pass through it: 42P05 (prepared statement
// already exists) and 26000 (prepared statement does not exist).
func poolerHint(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P05" || pgErr.Code == "26000") {
		return "; is a transaction pooler such as PgBouncer (pool_mode=transaction) in between? Let the adapter open the pool (New, which detects it) or add " +
			ParamPooler + "=transaction, or set default_query_exec_mode=cache_describe on the pool"
	}
	return ""
}

// poolerSource says how the transaction pooler became known, for messages.
func poolerSource(p poolerProbe) string {
	if p.detected {
		return "detected: the server's process id differs from the one the connection was given; " + ParamPooler + "=session or none says otherwise"
	}
	return ParamPooler + "=" + string(p.pooler)
}

// modeProblem says why exec mode m breaks behind a transaction pooler.
func modeProblem(m pgx.QueryExecMode) string {
	if m == pgx.QueryExecModeDescribeExec {
		return "it prepares a statement in one round trip and runs it in the next, which may reach another server connection"
	}
	return "the pooler passes named prepared statements through to shared server connections, so they clash (\"prepared statement ... already exists\")"
}
