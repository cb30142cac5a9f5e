package localpg

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// isolatedTempDir points os.TempDir() at a fresh directory that the postgres
// user can traverse, so that a test sees only its own clusters.
func isolatedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "localpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	t.Setenv("TMPDIR", dir)
	return dir
}

func startServer(t *testing.T, ctx context.Context) *Server {
	t.Helper()
	began := time.Now()
	s, err := Start(ctx, Options{Fast: true, Logf: t.Logf})
	if errors.Is(err, ErrNotInstalled) {
		t.Fatalf("PostgreSQL binaries are required for this test: %v", err)
	}
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Start took %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func queryString(t *testing.T, ctx context.Context, dsn, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestStartCreateDatabaseStop(t *testing.T) {
	tmp := isolatedTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := startServer(t, ctx)

	if !strings.HasPrefix(s.dir, tmp+string(filepath.Separator)+dirPrefix) {
		t.Errorf("cluster dir %s is not under os.TempDir() %s", s.dir, tmp)
	}
	dsnRE := regexp.MustCompile(`^postgres://postgres:([A-Z2-7]{26,})@127\.0\.0\.1:(\d+)/postgres\?sslmode=disable$`)
	m := dsnRE.FindStringSubmatch(s.DSN())
	if m == nil {
		t.Fatalf("DSN() = %q, want postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres?sslmode=disable", s.DSN())
	}
	if m[1] != s.password {
		t.Errorf("DSN password is not the cluster's")
	}
	if m[2] != strconv.Itoa(s.port) {
		t.Errorf("DSN port %s, server port %d", m[2], s.port)
	}

	if got := queryString(t, ctx, s.DSN(), "SHOW listen_addresses"); got != "127.0.0.1" {
		t.Errorf("listen_addresses = %q, want 127.0.0.1", got)
	}
	if got := queryString(t, ctx, s.DSN(), "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %q, want off in Fast mode", got)
	}
	if got := queryString(t, ctx, s.DSN(), "SHOW max_connections"); got != "200" {
		t.Errorf("max_connections = %q, want 200", got)
	}
	if got := queryString(t, ctx, s.DSN(), "SHOW server_encoding"); got != "UTF8" {
		t.Errorf("server_encoding = %q, want UTF8", got)
	}
	if _, err := os.Stat(filepath.Join(s.dir, ".s.PGSQL."+strconv.Itoa(s.port))); err != nil {
		t.Errorf("unix socket not inside the cluster dir: %v", err)
	}

	// A database, and a second one copied from it.
	began := time.Now()
	dsn, err := s.CreateDatabase(ctx, "first db", "")
	if err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	t.Logf("CreateDatabase took %s", time.Since(began).Round(time.Millisecond))
	if want := s.DSNFor("first db"); dsn != want {
		t.Errorf("CreateDatabase DSN = %q, want %q", dsn, want)
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Path != "/first db" {
		t.Errorf("DSN %q does not name the database: %v", dsn, err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the new database: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE marker (id int); INSERT INTO marker VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, ctx, dsn, "SELECT current_database()"); got != "first db" {
		t.Errorf("current_database() = %q", got)
	}
	conn.Close(ctx)

	copyDSN, err := s.CreateDatabase(ctx, "copy", "first db")
	if err != nil {
		t.Fatalf("CreateDatabase from a template: %v", err)
	}
	if got := queryString(t, ctx, copyDSN, "SELECT id::text FROM marker"); got != "42" {
		t.Errorf("copied database has marker %q, want 42", got)
	}

	// Bad inputs.
	if _, err := s.CreateDatabase(ctx, "copy", ""); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("CreateDatabase of an existing name: err = %v, want 'already exists'", err)
	}
	if _, err := s.CreateDatabase(ctx, "other", "no_such_template"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("CreateDatabase from a missing template: err = %v, want 'does not exist'", err)
	}
	if _, err := s.CreateDatabase(ctx, "", ""); err == nil {
		t.Error("CreateDatabase with an empty name succeeded")
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	began = time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %s", time.Since(began).Round(time.Millisecond))
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster dir %s still exists after Stop (err %v)", s.dir, err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("port %s still accepts connections after Stop", addr)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v, want nil (idempotent)", err)
	}
}

func TestStartReapsClustersOfDeadProcesses(t *testing.T) {
	isolatedTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A cluster whose owner "died": rewrite its owner file with a dead pid.
	orphan := startServer(t, ctx)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan.dir, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory that is not a cluster of ours: no owner file. Left alone.
	foreign := filepath.Join(os.TempDir(), dirPrefix+"foreign")
	if err := os.Mkdir(foreign, 0o755); err != nil {
		t.Fatal(err)
	}

	s := startServer(t, ctx)
	if _, err := os.Stat(orphan.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphaned cluster dir %s was not removed (err %v)", orphan.dir, err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(orphan.port)), time.Second); err == nil {
		c.Close()
		t.Errorf("orphaned cluster still listens on port %d", orphan.port)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("directory without owner file was touched: %v", err)
	}
	if _, err := os.Stat(s.dir); err != nil {
		t.Errorf("new cluster dir: %v", err)
	}
	if err := orphan.Stop(); err != nil {
		t.Errorf("Stop of an already reaped cluster: %v, want nil", err)
	}
	if orphan.password == s.password {
		t.Error("two clusters have the same password; want a random one for each")
	}
}

func TestStartWithoutBinaries(t *testing.T) {
	tmp := isolatedTempDir(t)
	empty := t.TempDir()
	_, err := Start(context.Background(), Options{
		search: &searchPath{path: empty, libGlob: filepath.Join(empty, "*", "bin")},
	})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"apt-get install -y postgresql", "TASQ_DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*")); len(left) != 0 {
		t.Errorf("Start left directories behind: %v", left)
	}
}

// fakeBin makes a directory with initdb and pg_ctl shell scripts.
func fakeBin(t *testing.T, root, initdb, pgCtl string) string {
	t.Helper()
	dir := filepath.Join(root, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"initdb": initdb, "pg_ctl": pgCtl} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestStartReportsInitdbFailure(t *testing.T) {
	tmp := isolatedTempDir(t)
	bin := fakeBin(t, filepath.Join(tmp, "fake"), "echo 'initdb: error: disk on fire' >&2; exit 1", "exit 1")
	_, err := Start(context.Background(), Options{search: &searchPath{path: bin, libGlob: filepath.Join(tmp, "none")}})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "initdb failed") {
		t.Fatalf("err = %v, want the initdb failure and its output", err)
	}
	t.Logf("error: %v", err)
	if left, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*")); len(left) != 0 {
		t.Errorf("Start left directories behind: %v", left)
	}
}

func TestStartReportsServerLogOnStartFailure(t *testing.T) {
	tmp := isolatedTempDir(t)
	// initdb "succeeds"; pg_ctl writes to the log (the argument after -l) and fails.
	pgCtl := `while [ $# -gt 0 ]; do if [ "$1" = -l ]; then echo 'FATAL:  invalid value for parameter "shared_buffers"' >> "$2"; fi; shift; done; echo 'pg_ctl: could not start server' >&2; exit 1`
	bin := fakeBin(t, filepath.Join(tmp, "fake"), "exit 0", pgCtl)
	_, err := Start(context.Background(), Options{search: &searchPath{path: bin, libGlob: filepath.Join(tmp, "none")}})
	if err == nil || !strings.Contains(err.Error(), "could not start server") || !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Fatalf("err = %v, want pg_ctl's output and the server log tail", err)
	}
	t.Logf("error: %v", err)
	if left, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*")); len(left) != 0 {
		t.Errorf("Start left directories behind: %v", left)
	}
}

func TestFindBinaries(t *testing.T) {
	root := t.TempDir()
	mk := func(dir string, names ...string) string {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	v96 := mk(filepath.Join(root, "lib", "9.6", "bin"), "initdb", "pg_ctl")
	v16 := mk(filepath.Join(root, "lib", "16", "bin"), "initdb", "pg_ctl")
	mk(filepath.Join(root, "lib", "17", "bin"), "initdb") // incomplete: no pg_ctl
	glob := filepath.Join(root, "lib", "*", "bin")

	// Highest complete version wins when PATH has nothing.
	b, err := findBinaries(&searchPath{path: filepath.Join(root, "nothing"), libGlob: glob})
	if err != nil || b.pgCtl != filepath.Join(v16, "pg_ctl") || b.initdb != filepath.Join(v16, "initdb") {
		t.Errorf("findBinaries = %+v, %v; want the 16 binaries", b, err)
	}

	// PATH wins, and a symlinked initdb takes pg_ctl from its real directory.
	pathDir := mk(filepath.Join(root, "path"))
	if err := os.Symlink(filepath.Join(v96, "initdb"), filepath.Join(pathDir, "initdb")); err != nil {
		t.Fatal(err)
	}
	b, err = findBinaries(&searchPath{path: pathDir, libGlob: glob})
	if err != nil || b.pgCtl != filepath.Join(v96, "pg_ctl") || b.initdb != filepath.Join(v96, "initdb") {
		t.Errorf("findBinaries = %+v, %v; want the 9.6 binaries found through PATH", b, err)
	}

	// Not executable does not count.
	noexec := mk(filepath.Join(root, "noexec"))
	for _, n := range []string{"initdb", "pg_ctl"} {
		if err := os.WriteFile(filepath.Join(noexec, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := findBinaries(&searchPath{path: noexec, libGlob: filepath.Join(noexec, "*")}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("non-executable files: err = %v, want ErrNotInstalled", err)
	}
}

func TestSortByVersionDesc(t *testing.T) {
	dirs := []string{"/l/9.6/bin", "/l/15/bin", "/l/beta/bin", "/l/16/bin", "/l/10/bin"}
	sortByVersionDesc(dirs)
	want := "/l/16/bin /l/15/bin /l/10/bin /l/9.6/bin /l/beta/bin"
	if got := strings.Join(dirs, " "); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
