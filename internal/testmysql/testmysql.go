// Package testmysql gives every test package that needs MySQL or MariaDB a
// server and fresh, isolated databases with the TasQ schema, as testpg does
// for PostgreSQL.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testmysql.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := testmysql.NewDatabase(t) // tasq_jobs exists; dropped when the test ends
//		...
//	}
//
// Main picks the server, in this order:
//
//  1. TASQ_MYSQL_URL, when set: an existing MySQL 8 or MariaDB 10.6+ server,
//     as a go-sql-driver DSN such as root@tcp(127.0.0.1:3306)/ (a database in
//     the DSN is ignored). Its user must be allowed to create and drop
//     databases, because every test gets a database of its own.
//  2. A throwaway MariaDB server from the local binaries (mariadb-install-db
//     and mariadbd, e.g. after `apt-get install -y mariadb-server`; no service
//     needs to run): a fresh data directory under os.TempDir(), listening on
//     127.0.0.1 only, with a root user without password.
//
// If neither can be had, Main prints why and returns a non-zero code: tests
// that need MySQL fail loudly rather than skip. Main stops the server it
// started (by its pid) after the tests ran, also on SIGINT and SIGTERM; on
// Linux the kernel stops it if the test process dies first.
//
// Every NewDatabase applies the schema with migrations.UpMySQL, so the
// embedded migrations themselves are what the tests run against.
package testmysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/tasqhq/tasq/internal/testmain"
	"github.com/tasqhq/tasq/migrations"
)

// EnvURL names the environment variable that points the tests at an existing
// MySQL or MariaDB server instead of starting one.
const EnvURL = "TASQ_MYSQL_URL"

// current is the harness set up by Main for this test binary.
var current atomic.Pointer[harness]

// harness is the server chosen by Main and the databases made on it.
type harness struct {
	source string          // where the server comes from, for messages
	base   *gomysql.Config // the server's address and credentials, no database
	admin  *sql.DB
	stop   func() error // stops what Main started; nil for TASQ_MYSQL_URL
	log    *slog.Logger

	seq atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// Main sets up a server (see the package documentation), runs the tests with
// m.Run, tears down what it set up and returns the exit code for os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(testmysql.Main(m)) }
func Main(m testmain.Runner) int {
	return testmain.Serve(m, testmain.Setup{
		Name: "testmysql", Need: "a usable MySQL or MariaDB server", Timeout: 5 * time.Minute,
		Start: func(ctx context.Context, log *slog.Logger) (string, func() error, error) {
			h, err := setUp(ctx, log)
			if err != nil {
				return "", nil, err
			}
			current.Store(h)
			return h.source, func() error { defer current.Store(nil); return h.close() }, nil
		},
	})
}

// NewDatabase creates a fresh, uniquely named database, applies the TasQ
// schema with migrations.UpMySQL and returns its DSN (go-sql-driver form,
// e.g. root@tcp(127.0.0.1:41234)/tasq_test_...). The database is dropped when
// the test and its subtests end; connections still using it are killed.
func NewDatabase(t testing.TB) string {
	t.Helper()
	dsn := NewEmptyDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	if err := migrations.UpMySQL(ctx, dsn); err != nil {
		t.Fatalf("testmysql: apply the TasQ schema: %v", err)
	}
	mustHarness(t).log.Debug("schema applied", "took", time.Since(began).Round(time.Millisecond))
	return dsn
}

// NewEmptyDatabase is NewDatabase without the schema, for migration tests.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	h := mustHarness(t)
	name := h.databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := h.admin.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)); err != nil {
		t.Fatalf("testmysql: create database %s on %s: %v", name, h.source, err)
	}
	t.Cleanup(func() {
		if err := h.dropDatabase(name); err != nil {
			t.Errorf("testmysql: %v; drop it by hand", err)
		}
	})
	return h.dsn(name)
}

// AdminDSN returns the DSN of the server without a database, as root (a
// started server) or as given in TASQ_MYSQL_URL. It panics when called
// outside a test binary whose TestMain calls Main.
func AdminDSN() string {
	h := current.Load()
	if h == nil {
		panic("testmysql: AdminDSN called before testmysql.Main; add `func TestMain(m *testing.M) { os.Exit(testmysql.Main(m)) }` to the package's tests")
	}
	return h.dsn("")
}

func mustHarness(t testing.TB) *harness {
	t.Helper()
	h := current.Load()
	if h == nil {
		t.Fatal("testmysql: no server; add `func TestMain(m *testing.M) { os.Exit(testmysql.Main(m)) }` to this package's tests")
	}
	return h
}

// setUp chooses and prepares the server.
func setUp(ctx context.Context, log *slog.Logger) (*harness, error) {
	if dsn := os.Getenv(EnvURL); dsn != "" {
		cfg, err := gomysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
		if err != nil {
			return nil, fmt.Errorf("%s is set but cannot be parsed: %w; use a go-sql-driver DSN such as root@tcp(127.0.0.1:3306)/", EnvURL, err)
		}
		h, err := newHarness(ctx, EnvURL+" ("+cfg.Addr+")", cfg, nil, log)
		if err != nil {
			return nil, fmt.Errorf("%s is set but unusable: %w", EnvURL, err)
		}
		if err := h.checkCreateDB(ctx); err != nil {
			_ = h.close()
			return nil, err
		}
		return h, nil
	}
	began := time.Now()
	srv, err := startLocal(ctx, func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) })
	if err != nil {
		return nil, fmt.Errorf("%s is not set, and no local MariaDB server could be started: %w\n"+
			"Fix one of them: export %s='USER:PASS@tcp(127.0.0.1:3306)/' (a user who may create databases), or run `apt-get install -y mariadb-server`",
			EnvURL, err, EnvURL)
	}
	log.Info("local MariaDB started", "addr", srv.config().Addr, "took", time.Since(began).Round(time.Millisecond))
	return newHarness(ctx, "local MariaDB binaries", srv.config(), srv.stop, log)
}

// newHarness connects the admin pool; on failure it calls stop itself.
func newHarness(ctx context.Context, source string, cfg *gomysql.Config, stop func() error, log *slog.Logger) (*harness, error) {
	base := cfg.Clone()
	base.DBName = ""
	admin := base.Clone()
	if admin.Timeout == 0 {
		admin.Timeout = 10 * time.Second
	}
	// DROP DATABASE waits for metadata locks; never for ever.
	admin.Params = map[string]string{"lock_wait_timeout": "30"}
	conn, err := gomysql.NewConnector(admin)
	if err == nil {
		db := sql.OpenDB(conn)
		db.SetMaxOpenConns(4)
		pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = db.PingContext(pingCtx)
		cancel()
		if err == nil {
			return &harness{source: source, base: base, admin: db, stop: stop, log: log}, nil
		}
		_ = db.Close()
	}
	err = fmt.Errorf("connect to %s as %q: %w; is the server running and the DSN right?", cfg.Addr, cfg.User, err)
	if stop != nil {
		err = errors.Join(err, stop())
	}
	return nil, err
}

// checkCreateDB fails early, with a clear message, when the user of
// TASQ_MYSQL_URL cannot create the per-test databases.
func (h *harness) checkCreateDB(ctx context.Context) error {
	name := fmt.Sprintf("tasq_probe_%d", os.Getpid())
	if _, err := h.admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(name)); err != nil {
		return fmt.Errorf("%s: user %q may not create databases, but every test needs one of its own: %w; "+
			"grant it (GRANT ALL ON *.* TO ...), use root, or unset %s to let the tests start a server", EnvURL, h.base.User, err, EnvURL)
	}
	if _, err := h.admin.ExecContext(ctx, "DROP DATABASE "+quoteIdent(name)); err != nil {
		return fmt.Errorf("%s: user %q may create but not drop databases: %w; drop %s by hand and grant DROP", EnvURL, h.base.User, err, name)
	}
	return nil
}

// dsn returns the DSN of database db ("" for none) on the server.
func (h *harness) dsn(db string) string {
	c := h.base.Clone()
	c.DBName = db
	return c.FormatDSN()
}

// dropDatabase kills the connections still using database name, then drops it.
func (h *harness) dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := h.admin.QueryContext(ctx, `SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()`, name)
	if err == nil {
		var ids []int64
		for rows.Next() {
			var id int64
			if rows.Scan(&id) == nil {
				ids = append(ids, id)
			}
		}
		rows.Close()
		for _, id := range ids {
			_, _ = h.admin.ExecContext(ctx, fmt.Sprintf("KILL %d", id)) // it may have gone meanwhile
		}
	}
	if _, err := h.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)); err != nil {
		return fmt.Errorf("drop database %s on %s: %w", name, h.source, err)
	}
	return nil
}

// databaseName returns a name unique on the server: pid and sequence number,
// plus as much of the test name as fits MySQL's 64-character limit.
func (h *harness) databaseName(testName string) string {
	name := fmt.Sprintf("tasq_test_%d_%d_", os.Getpid(), h.seq.Add(1))
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len()+len(name) >= 64 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return strings.TrimRight(name+b.String(), "_")
}

// close closes the pool and stops the server; idempotent.
func (h *harness) close() error {
	h.closeOnce.Do(func() {
		var errs []error
		if err := h.admin.Close(); err != nil {
			errs = append(errs, err)
		}
		if h.stop != nil {
			if err := h.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}

// quoteIdent quotes a MySQL identifier.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}
