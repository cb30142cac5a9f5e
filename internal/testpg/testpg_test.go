package testpg_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/migrations"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func databases(t *testing.T) []string {
	t.Helper()
	conn := connect(t, testpg.AdminDSN())
	rows, err := conn.Query(context.Background(), "SELECT datname FROM pg_database ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestNewDatabaseHasSchema(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	dsn := testpg.NewDatabase(t)
	t.Logf("first NewDatabase (template + copy) took %s", time.Since(began).Round(time.Millisecond))

	conn := connect(t, dsn)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM tasq_jobs").Scan(&n); err != nil {
		t.Fatalf("SELECT count(*) FROM tasq_jobs: %v", err)
	}
	if n != 0 {
		t.Errorf("count = %d, want 0 in a fresh database", n)
	}
	v, dirty, err := migrations.Version(ctx, dsn)
	if err != nil || dirty || v != migrations.Latest {
		t.Errorf("migrations.Version = %d, dirty %v, err %v; want %d, clean", v, dirty, err, migrations.Latest)
	}
}

func TestNewDatabaseIsFreshEachTime(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	a := testpg.NewDatabase(t)
	t.Logf("NewDatabase took %s", time.Since(began).Round(time.Millisecond))
	b := testpg.NewDatabase(t)
	if a == b {
		t.Fatalf("two calls returned the same DSN %s", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	var na, nb string
	if err := ca.QueryRow(ctx, "SELECT current_database()").Scan(&na); err != nil {
		t.Fatal(err)
	}
	if err := cb.QueryRow(ctx, "SELECT current_database()").Scan(&nb); err != nil {
		t.Fatal(err)
	}
	if na == nb {
		t.Fatalf("both DSNs reach database %s", na)
	}
	if _, err := ca.Exec(ctx, `INSERT INTO tasq_jobs (id, kind) VALUES (gen_random_uuid(), 'probe')`); err != nil {
		t.Fatalf("insert a job: %v", err)
	}
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM tasq_jobs").Scan(&n); err != nil || n != 0 {
		t.Errorf("other database sees %d jobs (err %v), want 0", n, err)
	}
}

func TestNewDatabaseDroppedAfterTest(t *testing.T) {
	var name string
	t.Run("uses a database", func(t *testing.T) {
		conn := connect(t, testpg.NewDatabase(t)) // left open on purpose: the drop forces it
		if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
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
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, testpg.NewDatabase(t))
			if _, err := conn.Exec(context.Background(), "SELECT count(*) FROM tasq_jobs"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	dsn := testpg.NewEmptyDatabase(t)
	conn := connect(t, dsn)
	var reg *string
	if err := conn.QueryRow(ctx, "SELECT to_regclass('tasq_jobs')::text").Scan(&reg); err != nil {
		t.Fatal(err)
	}
	if reg != nil {
		t.Fatalf("empty database already has %s", *reg)
	}
	if _, _, err := migrations.Version(ctx, dsn); err != migrations.ErrNoVersion {
		t.Errorf("Version of an empty database: err = %v, want ErrNoVersion", err)
	}
	if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatalf("migrations.Up on an empty database: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM tasq_jobs").Scan(&n); err != nil {
		t.Fatalf("after Up: %v", err)
	}
}

// runSelf runs this test binary again with TASQ_DATABASE_URL set, running only
// the tests matching run, and returns its output and error.
func runSelf(t *testing.T, databaseURL, run string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), testpg.EnvDatabaseURL+"="+databaseURL)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestExistingServerFromEnv(t *testing.T) {
	if os.Getenv(testpg.EnvDatabaseURL) != "" {
		t.Skip("already running against TASQ_DATABASE_URL")
	}
	before := databases(t)
	out, err := runSelf(t, testpg.AdminDSN(), "^(TestNewDatabaseHasSchema|TestNewDatabaseIsFreshEachTime)$")
	if err != nil {
		t.Fatalf("tests against TASQ_DATABASE_URL failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "--- PASS: TestNewDatabaseHasSchema") {
		t.Fatalf("the child did not run the test:\n%s", out)
	}
	if after := databases(t); !slices.Equal(before, after) {
		t.Errorf("databases left behind on the existing server: before %v, after %v", before, after)
	}
}

func TestMainFailsLoudlyWithoutServer(t *testing.T) {
	out, err := runSelf(t, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", "^TestNewDatabaseHasSchema$")
	if err == nil {
		t.Fatalf("Main succeeded with an unreachable server:\n%s", out)
	}
	for _, want := range []string{"without a usable PostgreSQL server", "TASQ_DATABASE_URL is set but unusable", "127.0.0.1:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	t.Logf("child output:\n%s", out)
}

func TestMainRejectsUserWithoutCreateDB(t *testing.T) {
	if os.Getenv(testpg.EnvDatabaseURL) != "" {
		t.Skip("needs a server where the tests may create roles")
	}
	ctx := context.Background()
	admin := connect(t, testpg.AdminDSN())
	role := fmt.Sprintf("tasq_nocreatedb_%d", os.Getpid())
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'pw' NOCREATEDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u := strings.Replace(testpg.AdminDSN(), "://", "://"+role+":pw@", 1)
	if i, j := strings.Index(u, "@"), strings.LastIndex(u, "@"); i != j { // the DSN had credentials: drop them
		u = u[:i+1] + u[j+1:]
	}
	out, err := runSelf(t, u, "^TestNewDatabaseHasSchema$")
	if err == nil {
		t.Fatalf("Main succeeded for a user without CREATEDB:\n%s", out)
	}
	if !strings.Contains(out, "may not create databases") || !strings.Contains(out, "CREATEDB") {
		t.Errorf("output does not explain the missing privilege:\n%s", out)
	}
	t.Logf("child output:\n%s", out)
}

// TestLocalServerPasswordNotLogged checks that Main's log shows the local
// cluster's URL without its password, which is all that keeps other local
// users out of the cluster.
func TestLocalServerPasswordNotLogged(t *testing.T) {
	if os.Getenv(testpg.EnvDatabaseURL) != "" {
		t.Skip("the child would use TASQ_DATABASE_URL too")
	}
	// An empty TASQ_DATABASE_URL counts as unset: the child starts a server,
	// logs (it runs with -test.v), runs no test and stops the server.
	out, err := runSelf(t, "", "^$")
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "local PostgreSQL started") {
		t.Skipf("the child did not use the local binaries (a Docker engine answered?):\n%s", out)
	}
	if leaked := regexp.MustCompile(`postgres://postgres:[A-Z2-7]{26,}@`).FindString(out); leaked != "" {
		t.Errorf("the child logged the local server's password (%s...):\n%s", leaked[:25], out)
	}
	if !strings.Contains(out, "postgres://postgres:xxxxx@127.0.0.1:") {
		t.Errorf("the child did not log the redacted URL:\n%s", out)
	}
}
