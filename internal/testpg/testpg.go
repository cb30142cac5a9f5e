// Package testpg gives every test package that needs PostgreSQL a server and
// fresh, isolated databases with the TasQ schema.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := testpg.NewDatabase(t) // tasq_jobs exists; dropped when the test ends
//		...
//	}
//
// Main picks the server, in this order:
//
//  1. TASQ_DATABASE_URL, when set: an existing server. Its user must be allowed
//     to create databases (CREATEDB or superuser), because every test gets a
//     database of its own on that server; the URL's database is used only as
//     the maintenance database. The server must be PostgreSQL 13 or newer
//     (DROP DATABASE ... WITH (FORCE)).
//  2. A postgres:15-alpine container through testcontainers-go, when a Docker
//     engine answers within two seconds.
//  3. A throwaway cluster from the local PostgreSQL binaries (package localpg),
//     e.g. after `apt-get install -y postgresql`. It asks for a random
//     password, which AdminDSN and the DSNs of NewDatabase carry.
//
// If none can be had, Main prints why and returns a non-zero code: tests that
// need PostgreSQL fail loudly rather than skip. Main stops the server it started
// after the tests ran, also on SIGINT and SIGTERM.
//
// The schema is applied once per test binary, into a template database named
// tasq_template_<pid>; each NewDatabase then copies it with CREATE DATABASE ...
// TEMPLATE, which takes milliseconds.
package testpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/tasqhq/tasq/internal/localpg"
	"github.com/tasqhq/tasq/internal/testmain"
	"github.com/tasqhq/tasq/migrations"
)

// EnvDatabaseURL names the environment variable that points the tests at an
// existing PostgreSQL server instead of starting one.
const EnvDatabaseURL = "TASQ_DATABASE_URL"

// ContainerImage is the image used when a Docker engine is available.
const ContainerImage = "postgres:15-alpine"

// dockerProbeTimeout bounds how long Main waits for a Docker engine to answer.
const dockerProbeTimeout = 2 * time.Second

// current is the harness set up by Main for this test binary.
var current atomic.Pointer[harness]

// harness is the server chosen by Main and the databases made on it.
type harness struct {
	source   string // where the server comes from, for messages
	adminDSN string
	admin    *pgxpool.Pool
	stop     func() error // stops what Main started; nil for TASQ_DATABASE_URL
	log      *slog.Logger

	seq atomic.Int64

	tmplOnce sync.Once
	tmplName string
	tmplErr  error

	closeOnce sync.Once
	closeErr  error
}

// Main sets up a PostgreSQL server (see the package documentation), runs the
// tests with m.Run, tears down what it set up and returns the exit code for
// os.Exit. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
func Main(m testmain.Runner) int {
	return testmain.Serve(m, testmain.Setup{
		Name: "testpg", Need: "a usable PostgreSQL server", Timeout: 5 * time.Minute,
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

// NewDatabase creates a fresh, uniquely named database with the TasQ schema
// applied and returns its DSN. The database is dropped (WITH (FORCE), so open
// connections do not stop it) when the test and its subtests end.
func NewDatabase(t testing.TB) string {
	t.Helper()
	h := mustHarness(t)
	tmpl, err := h.template()
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	return h.newDatabase(t, tmpl)
}

// NewEmptyDatabase is NewDatabase without the schema, for migration tests: the
// database is a copy of the server's default template (template1).
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return mustHarness(t).newDatabase(t, "")
}

// AdminDSN returns the DSN of the server's maintenance database (the
// "postgres" database of a started server, or TASQ_DATABASE_URL as given).
// It panics when called outside a test binary whose TestMain calls Main.
func AdminDSN() string {
	h := current.Load()
	if h == nil {
		panic("testpg: AdminDSN called before testpg.Main; add `func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }` to the package's tests")
	}
	return h.adminDSN
}

func mustHarness(t testing.TB) *harness {
	t.Helper()
	h := current.Load()
	if h == nil {
		t.Fatal("testpg: no server; add `func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }` to this package's tests")
	}
	return h
}

// setUp chooses and prepares the server.
func setUp(ctx context.Context, log *slog.Logger) (*harness, error) {
	if dsn := os.Getenv(EnvDatabaseURL); dsn != "" {
		h, err := newHarness(ctx, "TASQ_DATABASE_URL", dsn, nil, log)
		if err != nil {
			return nil, fmt.Errorf("%s is set but unusable: %w", EnvDatabaseURL, err)
		}
		if err := h.checkCreateDB(ctx); err != nil {
			_ = h.close()
			return nil, err
		}
		return h, nil
	}

	var reasons []string
	if err := dockerAvailable(dockerProbeTimeout); err != nil {
		reasons = append(reasons, fmt.Sprintf("- Docker: no engine answered: %v", err))
		log.Info("no Docker engine; using local PostgreSQL binaries", "reason", err)
	} else {
		h, err := startContainer(ctx, log)
		if err == nil {
			return h, nil
		}
		reasons = append(reasons, fmt.Sprintf("- Docker: %v", err))
		log.Warn("PostgreSQL container failed; falling back to local PostgreSQL binaries", "err", err)
	}

	began := time.Now()
	srv, err := localpg.Start(ctx, localpg.Options{
		Fast: true,
		Logf: func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		reasons = append(reasons, fmt.Sprintf("- local binaries: %v", err))
		return nil, fmt.Errorf("%s is not set, and no server could be started:\n%s\n"+
			"Fix one of them: export %s=postgres://USER:PASS@HOST:PORT/DB?sslmode=disable (a user with CREATEDB), start Docker, or run `apt-get install -y postgresql`",
			EnvDatabaseURL, strings.Join(reasons, "\n"), EnvDatabaseURL)
	}
	// The URL carries the cluster's password, which keeps other local users out.
	log.Info("local PostgreSQL started", "dsn", redact(srv.DSN()), "took", time.Since(began).Round(time.Millisecond))
	h, err := newHarness(ctx, "local PostgreSQL binaries", srv.DSN(), srv.Stop, log)
	if err != nil {
		return nil, errors.Join(err, srv.Stop())
	}
	return h, nil
}

// newHarness connects the admin pool; on failure it calls stop itself.
func newHarness(ctx context.Context, source, adminDSN string, stop func() error, log *slog.Logger) (*harness, error) {
	cfg, err := pgxpool.ParseConfig(adminDSN)
	if err != nil {
		if stop != nil {
			err = errors.Join(err, stop())
		}
		return nil, fmt.Errorf("parse the database URL: %w; use the form postgres://USER:PASS@HOST:PORT/DB?sslmode=disable", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = pool.Ping(pingCtx)
		cancel()
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		err = fmt.Errorf("connect to %s: %w; is the server running and the URL right?", redact(adminDSN), err)
		if stop != nil {
			err = errors.Join(err, stop())
		}
		return nil, err
	}
	return &harness{source: source, adminDSN: adminDSN, admin: pool, stop: stop, log: log}, nil
}

// checkCreateDB fails early, with a clear message, when the user of
// TASQ_DATABASE_URL cannot create the per-test databases.
func (h *harness) checkCreateDB(ctx context.Context) error {
	var user string
	var ok bool
	err := h.admin.QueryRow(ctx,
		`SELECT current_user, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&user, &ok)
	if err != nil {
		return fmt.Errorf("%s: check the user's privileges: %w", EnvDatabaseURL, err)
	}
	if !ok {
		return fmt.Errorf("%s: user %q may not create databases, but every test needs one of its own; run `ALTER ROLE %s CREATEDB` as a superuser, or unset %s to let the tests start a server",
			EnvDatabaseURL, user, pgx.Identifier{user}.Sanitize(), EnvDatabaseURL)
	}
	return nil
}

// template creates the schema template on first use and returns its name.
func (h *harness) template() (string, error) {
	h.tmplOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		began := time.Now()
		name := "tasq_template_" + strconv.Itoa(os.Getpid())
		ident := pgx.Identifier{name}.Sanitize()
		// A leftover from an earlier process with the same pid would block CREATE.
		if _, err := h.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			h.tmplErr = fmt.Errorf("drop old template database %s: %w", name, err)
			return
		}
		if _, err := h.admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
			h.tmplErr = fmt.Errorf("create template database %s: %w", name, err)
			return
		}
		h.tmplName = name // from here on, close drops it
		if err := migrations.Up(ctx, dsnFor(h.adminDSN, name)); err != nil {
			h.tmplErr = fmt.Errorf("apply the TasQ migrations to template database %s: %w", name, err)
			return
		}
		// Nobody may connect to the template: a connection would block every copy.
		if _, err := h.admin.Exec(ctx, "ALTER DATABASE "+ident+" WITH ALLOW_CONNECTIONS false"); err != nil {
			h.tmplErr = fmt.Errorf("lock template database %s: %w", name, err)
			return
		}
		h.log.Info("schema template ready", "db", name, "took", time.Since(began).Round(time.Millisecond))
	})
	return h.tmplName, h.tmplErr
}

// newDatabase creates a database copied from template ("" = server default)
// and registers its removal.
func (h *harness) newDatabase(t testing.TB, template string) string {
	t.Helper()
	name := h.databaseName(t.Name())
	ident := pgx.Identifier{name}.Sanitize()
	sql := "CREATE DATABASE " + ident
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := h.admin.Exec(ctx, sql); err != nil {
		t.Fatalf("testpg: create database %s on %s: %v", name, h.source, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := h.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("testpg: drop database %s: %v; drop it by hand", name, err)
		}
	})
	return dsnFor(h.adminDSN, name)
}

// databaseName returns a name unique on the server: pid and sequence number,
// plus as much of the test name as fits PostgreSQL's 63-byte limit.
func (h *harness) databaseName(testName string) string {
	name := fmt.Sprintf("tasq_test_%d_%d_", os.Getpid(), h.seq.Add(1))
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len()+len(name) >= 63 {
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

// close drops the template, closes the pool and stops the server; idempotent.
func (h *harness) close() error {
	h.closeOnce.Do(func() {
		var errs []error
		// A started server takes its databases with it; only an existing
		// server needs the template dropped.
		if h.tmplName != "" && h.stop == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := h.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{h.tmplName}.Sanitize()+" WITH (FORCE)"); err != nil {
				errs = append(errs, fmt.Errorf("drop template database %s: %w; drop it by hand", h.tmplName, err))
			}
			cancel()
		}
		h.admin.Close()
		if h.stop != nil {
			if err := h.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}

// dockerAvailable reports whether a Docker engine answers within timeout.
// testcontainers may block or panic without an engine; neither escapes.
func dockerAvailable(timeout time.Duration) (err error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("testcontainers panicked: %v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		p, err := testcontainers.NewDockerProvider()
		if err != nil {
			done <- err
			return
		}
		done <- p.Health(ctx) // Health closes the provider
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("no answer within %s", timeout)
	}
}

// startContainer runs a PostgreSQL container and connects to it.
func startContainer(ctx context.Context, log *slog.Logger) (*harness, error) {
	began := time.Now()
	ctr, err := tcpostgres.Run(ctx, ContainerImage,
		tcpostgres.WithDatabase("postgres"),
		tcpostgres.WithUsername("postgres"),
		tcpostgres.WithPassword("postgres"),
		testcontainers.WithCmd("postgres",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200"),
		tcpostgres.BasicWaitStrategies(),
	)
	stop := func() error {
		if err := testcontainers.TerminateContainer(ctr); err != nil {
			return fmt.Errorf("terminate the PostgreSQL container: %w; remove it with `docker rm -f`", err)
		}
		return nil
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start a %s container: %w", ContainerImage, err), stop())
	}
	dsn, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("address of the PostgreSQL container: %w", err), stop())
	}
	log.Info("PostgreSQL container started", "image", ContainerImage, "took", time.Since(began).Round(time.Millisecond))
	return newHarness(ctx, "Docker container "+ContainerImage, dsn, stop, log)
}

// dsnFor returns dsn with its database replaced by db. It accepts URLs
// (postgres://...) and keyword/value strings (host=... dbname=...).
func dsnFor(dsn, db string) string {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path = "/" + db
			u.RawPath = ""
			return u.String()
		}
	}
	// keyword/value: a later dbname overrides an earlier one.
	return dsn + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db) + "'"
}

// redact hides the password of a URL DSN for messages.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	if strings.Contains(dsn, "password") {
		return "(the configured database)"
	}
	return dsn
}
