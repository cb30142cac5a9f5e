// Package mysql is TasQ's adapter for MySQL 8 and MariaDB 10.6+, through
// database/sql and github.com/go-sql-driver/mysql.
//
// Jobs live in the tasq_jobs table, created by migrations.UpMySQL (or
// `tasq migrate up` against the MySQL database); its columns mirror the
// PostgreSQL table (see migrations/mysql for the differences). Workers claim
// jobs in short READ COMMITTED transactions with SELECT ... FOR UPDATE SKIP
// LOCKED, then hold a lease instead of an open transaction while a job runs.
// Every time (run_at, leases, dispatched_at, finished_at) comes from the
// database clock and is stored as UTC in DATETIME(6) columns.
//
// There is no LISTEN/NOTIFY in MySQL: workers of other processes find new
// jobs by polling (worker.Config.PollInterval). The adapter implements
// queue.Notifier only within one process: jobs inserted, handed back,
// retried, promoted or rescued through an Adapter wake the workers
// subscribed to that same Adapter at once.
//
// Dispatch can join the caller's transaction given as a *sql.Tx opened on a
// MySQL connection.
//
// Importing the package registers it as the driver "mysql".
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/tasqhq/tasq/queue"
)

// DriverName is the name the adapter registers under.
const DriverName = "mysql"

// EnvURL names the environment variable that TasQ's tests and tools read a
// MySQL DSN from, e.g. root@tcp(127.0.0.1:3306)/app.
const EnvURL = "TASQ_MYSQL_URL"

// Minimum server versions: SKIP LOCKED arrived in MariaDB 10.6 and MySQL
// 8.0.1; the schema's expression defaults need MySQL 8.0.13.
const (
	minMariaDB = "10.6"
	minMySQL   = "8.0.13"
)

func init() {
	queue.RegisterDriver(DriverName, func(ctx context.Context, url string) (queue.Adapter, error) {
		a, err := New(ctx, url)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return a, nil
	})
}

// Adapter is the MySQL/MariaDB adapter. It implements queue.Adapter and
// queue.Notifier (in-process wake-ups only) and is safe for concurrent use.
type Adapter struct {
	db    *sql.DB
	ownDB bool
	addr  string // for messages

	subsMu sync.Mutex
	subs   map[chan string]struct{}
}

var _ queue.Adapter = (*Adapter)(nil)
var _ queue.Notifier = (*Adapter)(nil)

// ParseDSN parses a go-sql-driver/mysql DSN such as
// "user:pass@tcp(127.0.0.1:3306)/app?tls=true", optionally prefixed with
// "mysql://" as golang-migrate writes it, and sets what the adapter needs:
// ParseTime, client-side parameter interpolation (one round trip per
// statement) and a 10s dial timeout when none is given. The DSN must name a
// database.
func ParseDSN(dsn string) (*gomysql.Config, error) {
	if dsn == "" {
		return nil, fmt.Errorf("tasq/mysql: empty DSN; set %s, e.g. user:pass@tcp(127.0.0.1:3306)/app", EnvURL)
	}
	cfg, err := gomysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
	if err != nil {
		return nil, fmt.Errorf("tasq/mysql: cannot parse the DSN: %w; use the go-sql-driver form user:pass@tcp(host:3306)/dbname[?param=value]", err)
	}
	if cfg.DBName == "" {
		return nil, fmt.Errorf("tasq/mysql: the DSN %q names no database; add it after the slash, e.g. user:pass@tcp(%s)/app", redact(cfg), cfg.Addr)
	}
	cfg.ParseTime = true
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return cfg, nil
}

// New connects to the database named by dsn (see ParseDSN), checks that the
// server is recent enough and that the TasQ schema is migrated, and returns
// an adapter that owns its connection pool.
func New(ctx context.Context, dsn string) (*Adapter, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("tasq/mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	// A worker claims, finishes, renews leases and maintains at once; keep
	// enough idle connections that it does not reconnect all the time.
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	a, err := newAdapter(ctx, db, cfg.Addr)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	a.ownDB = true
	return a, nil
}

// NewFromDB returns an adapter on an existing pool opened with the
// go-sql-driver/mysql driver, after checking that the database answers and is
// migrated. Its DSN must name the database that holds tasq_jobs; parseTime
// and interpolateParams are optional (times are read either way). Close does
// not close a pool given here.
func NewFromDB(ctx context.Context, db *sql.DB) (*Adapter, error) {
	if db == nil {
		return nil, errors.New("tasq/mysql: NewFromDB got a nil *sql.DB")
	}
	return newAdapter(ctx, db, "the given *sql.DB")
}

func newAdapter(ctx context.Context, db *sql.DB, addr string) (*Adapter, error) {
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("tasq/mysql: cannot reach MySQL at %s: %w; check the DSN (%s) and that the server is running", addr, err, EnvURL)
	}
	var version string
	var dbName sql.NullString
	var tables int
	err := db.QueryRowContext(ctx, `SELECT VERSION(), DATABASE(),
    (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'tasq_jobs')`).
		Scan(&version, &dbName, &tables)
	if err != nil {
		return nil, fmt.Errorf("tasq/mysql: check the server at %s: %w; is it a MySQL or MariaDB server?", addr, err)
	}
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	if !dbName.Valid || dbName.String == "" {
		return nil, fmt.Errorf("tasq/mysql: the connection to %s has no default database; name the database in the DSN, e.g. user:pass@tcp(host:3306)/app", addr)
	}
	if tables == 0 {
		return nil, fmt.Errorf("%w (MySQL database %q at %s has no tasq_jobs table; apply the MySQL schema with `tasq migrate up` on this database or migrations.UpMySQL)",
			queue.ErrNotMigrated, dbName.String, addr)
	}
	return &Adapter{db: db, addr: addr}, nil
}

// checkVersion refuses servers without SKIP LOCKED.
func checkVersion(version string) error {
	isMariaDB := strings.Contains(strings.ToLower(version), "mariadb")
	minimum, product := minMySQL, "MySQL"
	if isMariaDB {
		minimum, product = minMariaDB, "MariaDB"
		version = strings.TrimPrefix(version, "5.5.5-") // old clients' replication prefix
	}
	if versionLess(version, minimum) {
		return fmt.Errorf("tasq/mysql: the server is %s %s, but TasQ needs %s %s or newer (for FOR UPDATE SKIP LOCKED); upgrade the server", product, version, product, minimum)
	}
	return nil
}

// versionLess compares the leading dotted numbers of a server version
// ("10.11.6-MariaDB-1", "8.0.36") with want ("10.6").
func versionLess(version, want string) bool {
	num := func(s string) []int {
		var out []int
		for _, part := range strings.Split(s, ".") {
			end := 0
			for end < len(part) && part[end] >= '0' && part[end] <= '9' {
				end++
			}
			n, err := strconv.Atoi(part[:end])
			if err != nil {
				break
			}
			out = append(out, n)
			if end < len(part) {
				break // "6-MariaDB": the version ends here
			}
		}
		return out
	}
	v, w := num(version), num(want)
	for i := range w {
		if i >= len(v) {
			return true
		}
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

// Name returns "mysql".
func (a *Adapter) Name() string { return DriverName }

// DB returns the adapter's connection pool, e.g. to begin a transaction for
// InsertTx.
func (a *Adapter) DB() *sql.DB { return a.db }

// Close closes the pool if the adapter opened it.
func (a *Adapter) Close() {
	if a.ownDB {
		_ = a.db.Close()
	}
}

// MySQL error numbers the adapter branches on.
const (
	errNoSuchTable = 1146 // ER_NO_SUCH_TABLE
	errBadField    = 1054 // ER_BAD_FIELD_ERROR: a column is missing
	errDeadlock    = 1213 // ER_LOCK_DEADLOCK: the transaction was rolled back
)

func errNumber(err error) uint16 {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// wrapErr names the failed operation and reports a missing table or column
// as queue.ErrNotMigrated, so a dropped or old schema says what to do.
func wrapErr(op string, err error) error {
	switch errNumber(err) {
	case errNoSuchTable, errBadField:
		return fmt.Errorf("tasq/mysql: %s: %w (%v; apply the MySQL schema with migrations.UpMySQL)", op, queue.ErrNotMigrated, err)
	}
	return fmt.Errorf("tasq/mysql: %s: %w", op, err)
}

// deadlockRetries is how often an operation that InnoDB chose as a deadlock
// victim is tried again; its work was rolled back, so retrying is safe.
const deadlockRetries = 3

// retryDeadlock runs fn until it succeeds, fails otherwise, or lost
// deadlockRetries deadlocks in a row.
func retryDeadlock(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || errNumber(err) != errDeadlock || attempt >= deadlockRetries || ctx.Err() != nil {
			return err
		}
	}
}

// inTx runs fn in a READ COMMITTED transaction (no gap locks, so claims and
// inserts do not block each other) and commits it, retrying on deadlock.
func (a *Adapter) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return retryDeadlock(ctx, func() error {
		tx, err := a.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// redact returns the DSN of cfg without its password, for messages.
func redact(cfg *gomysql.Config) string {
	c := cfg.Clone()
	if c.Passwd != "" {
		c.Passwd = "xxxxx"
	}
	return c.FormatDSN()
}
