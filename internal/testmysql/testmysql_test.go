package testmysql_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/migrations"
)

func TestMain(m *testing.M) { os.Exit(testmysql.Main(m)) }

func connect(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", dsn, err)
	}
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}

func databases(t *testing.T) []string {
	t.Helper()
	rows, err := connect(t, testmysql.AdminDSN()).Query("SHOW DATABASES")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

func TestNewDatabaseHasSchema(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	dsn := testmysql.NewDatabase(t)
	t.Logf("NewDatabase took %s", time.Since(began).Round(time.Millisecond))
	var n int
	if err := connect(t, dsn).QueryRow("SELECT COUNT(*) FROM tasq_jobs").Scan(&n); err != nil {
		t.Fatalf("SELECT COUNT(*) FROM tasq_jobs: %v", err)
	}
	if n != 0 {
		t.Errorf("count = %d, want 0 in a fresh database", n)
	}
	v, dirty, err := migrations.VersionMySQL(ctx, dsn)
	if err != nil || dirty || v != migrations.LatestMySQL {
		t.Errorf("VersionMySQL = %d, dirty %v, err %v; want %d, clean", v, dirty, err, migrations.LatestMySQL)
	}
}

func TestNewDatabaseIsFreshEachTime(t *testing.T) {
	a, b := testmysql.NewDatabase(t), testmysql.NewDatabase(t)
	if a == b {
		t.Fatalf("two calls returned the same DSN %s", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	var na, nb string
	if err := ca.QueryRow("SELECT DATABASE()").Scan(&na); err != nil {
		t.Fatal(err)
	}
	if err := cb.QueryRow("SELECT DATABASE()").Scan(&nb); err != nil {
		t.Fatal(err)
	}
	if na == nb {
		t.Fatalf("both DSNs reach database %s", na)
	}
	if _, err := ca.Exec(`INSERT INTO tasq_jobs (id, kind) VALUES (UUID(), 'probe')`); err != nil {
		t.Fatalf("insert a job: %v", err)
	}
	var n int
	if err := cb.QueryRow("SELECT COUNT(*) FROM tasq_jobs").Scan(&n); err != nil || n != 0 {
		t.Errorf("other database sees %d jobs (err %v), want 0", n, err)
	}
}

func TestNewDatabaseDroppedAfterTest(t *testing.T) {
	var name string
	t.Run("uses a database", func(t *testing.T) {
		db := connect(t, testmysql.NewDatabase(t))
		db.SetMaxOpenConns(1)
		// An open transaction holding a metadata lock must not block the drop.
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow("SELECT DATABASE() FROM tasq_jobs UNION ALL SELECT DATABASE()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	if name == "" {
		t.Fatal("subtest did not report its database")
	}
	if slices.Contains(databases(t), name) {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestNewDatabaseInParallel(t *testing.T) {
	for i := range 6 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			if _, err := connect(t, testmysql.NewDatabase(t)).Exec("SELECT COUNT(*) FROM tasq_jobs"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	dsn := testmysql.NewEmptyDatabase(t)
	db := connect(t, dsn)
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("empty database has %d tables (err %v)", n, err)
	}
	if _, _, err := migrations.VersionMySQL(ctx, dsn); err != migrations.ErrNoVersion {
		t.Errorf("VersionMySQL of an empty database: err = %v, want ErrNoVersion", err)
	}
	if err := migrations.UpMySQL(ctx, dsn); err != nil {
		t.Fatalf("UpMySQL on an empty database: %v", err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM tasq_jobs").Scan(&n); err != nil {
		t.Fatalf("after UpMySQL: %v", err)
	}
}

func TestServerListensOnLoopbackOnly(t *testing.T) {
	if os.Getenv(testmysql.EnvURL) != "" {
		t.Skip("the server was not started by the harness")
	}
	var bind string
	if err := connect(t, testmysql.AdminDSN()).QueryRow("SELECT @@bind_address").Scan(&bind); err != nil {
		t.Fatal(err)
	}
	if bind != "127.0.0.1" {
		t.Errorf("bind_address = %q, want 127.0.0.1", bind)
	}
}

// runSelf runs this test binary again with env added, running only the tests
// matching run, and returns its output and error.
func runSelf(t *testing.T, env []string, run string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestExistingServerFromEnv(t *testing.T) {
	if os.Getenv(testmysql.EnvURL) != "" {
		t.Skip("already running against " + testmysql.EnvURL)
	}
	before := databases(t)
	out, err := runSelf(t, []string{testmysql.EnvURL + "=" + testmysql.AdminDSN()}, "^(TestNewDatabaseHasSchema|TestNewDatabaseIsFreshEachTime)$")
	if err != nil {
		t.Fatalf("tests against %s failed: %v\n%s", testmysql.EnvURL, err, out)
	}
	if !strings.Contains(out, "--- PASS: TestNewDatabaseHasSchema") {
		t.Fatalf("the child did not run the test:\n%s", out)
	}
	if strings.Contains(out, "mariadbd started") {
		t.Errorf("the child started a server although %s was set:\n%s", testmysql.EnvURL, out)
	}
	if after := databases(t); !slices.Equal(before, after) {
		t.Errorf("databases left behind on the existing server: before %v, after %v", before, after)
	}
}

// A server the harness starts is stopped, by its pid, when the tests end,
// and its directory is removed.
func TestStartedServerIsStopped(t *testing.T) {
	if os.Getenv(testmysql.EnvURL) != "" {
		t.Skip("running against " + testmysql.EnvURL + "; local binaries may be missing")
	}
	out, err := runSelf(t, []string{testmysql.EnvURL + "="}, "^TestNewDatabaseHasSchema$")
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`mariadbd started, pid (\d+), port \d+`).FindStringSubmatch(out)
	d := regexp.MustCompile(`stopped and (\S+) removed`).FindStringSubmatch(out)
	if m == nil || d == nil {
		t.Fatalf("the child did not report starting and stopping its server:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[1])
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("mariadbd %d still runs after its test process ended", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(d[1]); !os.IsNotExist(err) {
		t.Errorf("server directory %s still exists (%v)", d[1], err)
	}
}

func TestMainFailsLoudlyWithoutServer(t *testing.T) {
	out, err := runSelf(t, []string{testmysql.EnvURL + "=root@tcp(127.0.0.1:1)/?timeout=2s"}, "^TestNewDatabaseHasSchema$")
	if err == nil {
		t.Fatalf("Main succeeded with an unreachable server:\n%s", out)
	}
	for _, want := range []string{"without a usable MySQL or MariaDB server", testmysql.EnvURL + " is set but unusable", "127.0.0.1:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}

func TestMainRejectsUserWithoutCreateDB(t *testing.T) {
	if os.Getenv(testmysql.EnvURL) != "" {
		t.Skip("needs a server where the tests may create users")
	}
	admin := connect(t, testmysql.AdminDSN())
	user := fmt.Sprintf("tasq_nocreate_%d", os.Getpid())
	if _, err := admin.Exec("CREATE USER '" + user + "'@'127.0.0.1' IDENTIFIED BY 'pw'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec("DROP USER IF EXISTS '" + user + "'@'127.0.0.1'") })
	cfg, err := gomysql.ParseDSN(testmysql.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Passwd = user, "pw"
	out, err := runSelf(t, []string{testmysql.EnvURL + "=" + cfg.FormatDSN()}, "^TestNewDatabaseHasSchema$")
	if err == nil {
		t.Fatalf("Main succeeded for a user who may not create databases:\n%s", out)
	}
	if !strings.Contains(out, "may not create databases") {
		t.Errorf("output does not explain the missing privilege:\n%s", out)
	}
}
