package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/adaptertest"
	"github.com/tasqhq/tasq/adapters/mysql"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

func TestMain(m *testing.M) { os.Exit(testmysql.Main(m)) }

func newAdapter(t *testing.T) *mysql.Adapter {
	t.Helper()
	a, err := mysql.New(context.Background(), testmysql.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func sqlTx(t *testing.T, a queue.Adapter) (any, func() error, func() error) {
	tx, err := a.(*mysql.Adapter).DB().BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tx, tx.Commit, tx.Rollback
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		New: func(t *testing.T) queue.Adapter { return newAdapter(t) },
		Tx:  sqlTx,
	})
}

// newAdapterFromDB returns an adapter made by NewFromDB on a pool with the
// driver's defaults: server-side prepared statements (no interpolateParams)
// and times read without parseTime.
func newAdapterFromDB(t *testing.T) *mysql.Adapter {
	t.Helper()
	db, err := sql.Open("mysql", testmysql.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := mysql.NewFromDB(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// TestConformanceServerPrepared runs the suite through NewFromDB (see
// newAdapterFromDB).
func TestConformanceServerPrepared(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite already ran through New")
	}
	adaptertest.Run(t, adaptertest.Harness{
		New: func(t *testing.T) queue.Adapter { return newAdapterFromDB(t) },
		Tx:  sqlTx,
	})
}

func TestRegisteredDriver(t *testing.T) {
	ctx := context.Background()
	a, err := queue.OpenAdapter(ctx, "mysql", testmysql.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Name() != "mysql" {
		t.Errorf("Name = %q", a.Name())
	}
	// A failed open must not hand back a typed nil inside the interface.
	a, err = queue.OpenAdapter(ctx, "mysql", "root@tcp(127.0.0.1:1)/nothing?timeout=2s")
	if err == nil || a != nil {
		t.Errorf("OpenAdapter on an unreachable server = %v, %v; want nil and an error", a, err)
	}
}

func TestUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := mysql.New(ctx, "root@tcp(127.0.0.1:1)/app?timeout=2s")
	if err == nil {
		t.Fatal("New succeeded against a closed port")
	}
	for _, want := range []string{"cannot reach MySQL", "127.0.0.1:1", mysql.EnvURL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestBadDSN(t *testing.T) {
	ctx := context.Background()
	for dsn, want := range map[string]string{
		"":                               mysql.EnvURL,
		"postgres://u@h/db":              "user:pass@tcp(host:3306)/dbname",
		"root@tcp(127.0.0.1:3306)/":      "names no database",
		"mysql://root@tcp(127.0.0.1:1)/": "names no database",
	} {
		_, err := mysql.New(ctx, dsn)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%q) = %v, want an error saying %q", dsn, err, want)
		}
	}
}

func TestNotMigrated(t *testing.T) {
	ctx := context.Background()
	dsn := testmysql.NewEmptyDatabase(t)
	_, err := mysql.New(ctx, dsn)
	if !errors.Is(err, queue.ErrNotMigrated) {
		t.Fatalf("New on an empty database = %v, want ErrNotMigrated", err)
	}
	for _, want := range []string{"tasq migrate up", "migrations.UpMySQL", "tasq_jobs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// A schema dropped under a running adapter is reported the same way.
	a := newAdapterOn(t, migrated(t, dsn))
	if err := migrations.DownMySQL(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	_, err = a.Claim(ctx, queue.ClaimRequest{Queue: "default", WorkerID: "w", Limit: 1, Lease: time.Minute})
	if !errors.Is(err, queue.ErrNotMigrated) || !strings.Contains(err.Error(), "migrations.UpMySQL") {
		t.Errorf("Claim without a table = %v, want ErrNotMigrated naming migrations.UpMySQL", err)
	}
}

func migrated(t *testing.T, dsn string) string {
	t.Helper()
	if err := migrations.UpMySQL(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	return dsn
}

func newAdapterOn(t *testing.T, dsn string) *mysql.Adapter {
	t.Helper()
	a, err := mysql.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	dsn := testmysql.NewEmptyDatabase(t)
	if _, _, err := migrations.VersionMySQL(ctx, dsn); !errors.Is(err, migrations.ErrNoVersion) {
		t.Fatalf("VersionMySQL of an empty database = %v, want ErrNoVersion", err)
	}
	if err := migrations.UpMySQL(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	if err := migrations.UpMySQL(ctx, "mysql://"+dsn); err != nil { // current already: no change; golang-migrate's prefix accepted
		t.Fatalf("second UpMySQL: %v", err)
	}
	v, dirty, err := migrations.VersionMySQL(ctx, dsn)
	if err != nil || dirty || v != mysqlLatest {
		t.Fatalf("VersionMySQL = %d, dirty %v, %v; want %d, clean", v, dirty, err, mysqlLatest)
	}
	db := openDB(t, dsn)
	var table string
	if err := db.QueryRow(`SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`,
		migrations.MigrationsTable).Scan(&table); err != nil {
		t.Fatalf("migrations table %s: %v", migrations.MigrationsTable, err)
	}
	// The table takes a row as plain SQL would write it, defaults filled in.
	id := uuid.NewString()
	if _, err := db.Exec(`INSERT INTO tasq_jobs (id, kind) VALUES (?, 'plain.sql')`, id); err != nil {
		t.Fatalf("plain INSERT: %v", err)
	}
	a := newAdapterOn(t, dsn)
	j, err := a.GetJob(ctx, uuid.MustParse(id))
	if err != nil {
		t.Fatal(err)
	}
	if j.State != queue.StateAvailable || j.Queue != queue.DefaultQueue || j.MaxRetries != 3 || string(j.Payload) != "{}" ||
		len(j.Errors) != 0 || time.Since(j.DispatchedAt).Abs() > time.Minute {
		t.Errorf("row inserted with defaults = %+v", j)
	}
	for _, bad := range []string{
		`INSERT INTO tasq_jobs (id, kind) VALUES (UUID(), '')`,
		`INSERT INTO tasq_jobs (id, kind, attempt) VALUES (UUID(), 'k', -1)`,
		`INSERT INTO tasq_jobs (id, kind, payload) VALUES (UUID(), 'k', 'not json')`,
		`INSERT INTO tasq_jobs (id, kind, state) VALUES (UUID(), 'k', 'sleeping')`,
	} {
		if _, err := db.Exec(bad); err == nil {
			t.Errorf("the schema accepted %s", bad)
		}
	}
	db.Close()
	a.Close()

	if err := migrations.DownMySQL(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	if _, _, err := migrations.VersionMySQL(ctx, dsn); !errors.Is(err, migrations.ErrNoVersion) {
		t.Errorf("VersionMySQL after DownMySQL = %v, want ErrNoVersion", err)
	}
	if _, err := mysql.New(ctx, dsn); !errors.Is(err, queue.ErrNotMigrated) {
		t.Errorf("New after DownMySQL = %v, want ErrNotMigrated", err)
	}
	if err := migrations.StepsMySQL(ctx, dsn, 1); err != nil {
		t.Fatalf("StepsMySQL(1): %v", err)
	}
	if v, _, err := migrations.VersionMySQL(ctx, dsn); err != nil || v != 1 {
		t.Errorf("VersionMySQL after StepsMySQL(1) = %d, %v", v, err)
	}
	if hasClaimToken(t, dsn) {
		t.Error("version 1 has the claim_token column")
	}
	// Version 2 adds claim_token to existing rows, 0 until their next claim.
	db = openDB(t, dsn)
	if _, err := db.Exec(`INSERT INTO tasq_jobs (id, kind) VALUES (?, 'plain.sql')`, id); err != nil {
		t.Fatal(err)
	}
	if err := migrations.StepsMySQL(ctx, dsn, 1); err != nil {
		t.Fatalf("StepsMySQL(1) to version 2: %v", err)
	}
	var token int64
	if err := db.QueryRow(`SELECT claim_token FROM tasq_jobs WHERE id = ?`, id).Scan(&token); err != nil || token != 0 {
		t.Errorf("claim_token of a row older than the column = %d, %v; want 0", token, err)
	}
	if err := migrations.StepsMySQL(ctx, dsn, -1); err != nil {
		t.Fatalf("StepsMySQL(-1) from version 2: %v", err)
	}
	if hasClaimToken(t, dsn) {
		t.Error("claim_token is still there after rolling version 2 back")
	}
}

// mysqlLatest is the newest migration in migrations/mysql.
const mysqlLatest = migrations.LatestMySQL

func hasClaimToken(t *testing.T, dsn string) bool {
	t.Helper()
	var n int
	if err := openDB(t, dsn).QueryRow(`SELECT COUNT(*) FROM information_schema.columns
WHERE table_schema = DATABASE() AND table_name = 'tasq_jobs' AND column_name = 'claim_token'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestMigrationErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := migrations.UpMySQL(ctx, "root@tcp(127.0.0.1:1)/app?timeout=2s")
	if err == nil || !strings.Contains(err.Error(), "cannot reach MySQL at 127.0.0.1:1") || !strings.Contains(err.Error(), migrations.EnvMySQLURL) {
		t.Errorf("UpMySQL on a closed port = %v", err)
	}
	if err := migrations.UpMySQL(ctx, strings.TrimSuffix(testmysql.AdminDSN(), "/")+"/"); err == nil || !strings.Contains(err.Error(), "names no database") {
		t.Errorf("UpMySQL without a database = %v", err)
	}
	if err := migrations.UpMySQL(ctx, ""); err == nil || !strings.Contains(err.Error(), migrations.EnvMySQLURL) {
		t.Errorf("UpMySQL(\"\") = %v", err)
	}
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}
