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
// Every claim of a job sets its claim_token column one higher, and nothing
// resets it; outcomes and lease renewals apply only while the job is running
// under the token of their execution, for the worker that claimed it. The
// attempt column is the retry budget only (an operator's RetryJob resets it).
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

// Adapter is the MySQL/MariaDB adapter. It implements queue.Adapter and the
// capabilities queue.TxInserter (a *sql.Tx), queue.Maintainer,
// queue.Notifier (in-process wake-ups only), queue.JobReader,
// queue.JobEditor and queue.StatsReader, and is safe for concurrent use.
type Adapter struct {
	db      *sql.DB
	ownDB   bool
	addr    string // for messages
	mariaDB bool   // JSON is LONGTEXT with a JSON_VALID check, not a type

	subsMu sync.Mutex
	subs   map[chan string]struct{}
}

var (
	_ queue.Adapter     = (*Adapter)(nil)
	_ queue.TxInserter  = (*Adapter)(nil)
	_ queue.Maintainer  = (*Adapter)(nil)
	_ queue.Notifier    = (*Adapter)(nil)
	_ queue.JobReader   = (*Adapter)(nil)
	_ queue.JobEditor   = (*Adapter)(nil)
	_ queue.StatsReader = (*Adapter)(nil)
)

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
	return &Adapter{db: db, addr: addr, mariaDB: isMariaDB(version)}, nil
}

// isMariaDB tells MariaDB from MySQL by the server version.
func isMariaDB(version string) bool { return strings.Contains(strings.ToLower(version), "mariadb") }

// checkVersion refuses servers without SKIP LOCKED.
func checkVersion(version string) error {
	minimum, product := minMySQL, "MySQL"
	if isMariaDB(version) {
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

// dataErrors are the MySQL and MariaDB error numbers of a value the server
// cannot store: the statement that met it failed as a whole, and the same
// statement without that value would succeed.
var dataErrors = map[uint16]bool{
	1048: true, // ER_BAD_NULL_ERROR: NULL in a NOT NULL column (a JSON function gave up)
	1153: true, // ER_NET_PACKET_TOO_LARGE: over max_allowed_packet
	1264: true, // ER_WARN_DATA_OUT_OF_RANGE
	1265: true, // WARN_DATA_TRUNCATED
	1292: true, // ER_TRUNCATED_WRONG_VALUE (e.g. an impossible time)
	1300: true, // ER_INVALID_CHARACTER_STRING
	1301: true, // ER_WARN_ALLOWED_PACKET_OVERFLOWED
	1366: true, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: "Incorrect string value" (bad UTF-8)
	1367: true, // ER_ILLEGAL_VALUE_FOR_TYPE
	1406: true, // ER_DATA_TOO_LONG
	1441: true, // ER_DATETIME_FUNCTION_OVERFLOW: run_at beyond year 9999
	1690: true, // ER_DATA_OUT_OF_RANGE: an expression overflowed
	3140: true, // ER_INVALID_JSON_TEXT (MySQL)
	3141: true, // ER_INVALID_JSON_TEXT_IN_PARAM (MySQL)
	3144: true, // ER_INVALID_JSON_CHARSET (MySQL)
	3146: true, // ER_INVALID_TYPE_FOR_JSON (MySQL)
	3156: true, // ER_INVALID_JSON_VALUE_FOR_CAST (MySQL)
	3157: true, // ER_JSON_DOCUMENT_TOO_DEEP (MySQL)
	3819: true, // ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
	4025: true, // ER_CONSTRAINT_FAILED: a CHECK constraint, e.g. JSON_VALID (MariaDB)
}

// isDataError reports whether err is the server refusing a value (see
// dataErrors), or the driver refusing a statement too large to send.
func isDataError(err error) bool {
	return dataErrors[errNumber(err)] || errors.Is(err, gomysql.ErrPktTooLarge)
}

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
