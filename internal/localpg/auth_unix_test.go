//go:build unix

package localpg

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connectErr connects with dsn and returns the error; a connection that
// succeeds is closed and reported as nil.
func connectErr(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		_ = conn.Close(ctx)
	}
	return err
}

// wantAuthRefused fails the test unless err is the server refusing the
// password (SQLSTATE 28P01, invalid_password).
func wantAuthRefused(t *testing.T, what string, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		t.Errorf("%s: connected; want the server to refuse it (password authentication)", what)
	case !errors.As(err, &pgErr) || pgErr.Code != "28P01":
		t.Errorf("%s: err = %v; want SQLSTATE 28P01 (password authentication failed)", what, err)
	default:
		t.Logf("%s: refused as expected: %v", what, err)
	}
}

// TestClusterRequiresPassword checks that the cluster is no open door for
// other local users: TCP and the unix socket ask for the cluster's random
// password, the socket's directory is private, and the password file is gone.
func TestClusterRequiresPassword(t *testing.T) {
	isolatedTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := startServer(t, ctx)

	// The handed-out URLs work, and carry the password.
	u, err := url.Parse(s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	pw, ok := u.User.Password()
	if !ok || len(pw) < 26 || u.User.Username() != "postgres" {
		t.Errorf("DSN user %q, password set %v (%d chars); want postgres with a random password of at least 26 characters", u.User.Username(), ok, len(pw))
	}
	if got := queryString(t, ctx, s.DSN(), "SELECT current_user"); got != "postgres" {
		t.Errorf("current_user = %q, want postgres", got)
	}
	dbDSN, err := s.CreateDatabase(ctx, "authcheck", "")
	if err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	if got := queryString(t, ctx, dbDSN, "SELECT current_database()"); got != "authcheck" {
		t.Errorf("CreateDatabase's URL reaches %q, want authcheck", got)
	}

	// TCP without the password, or with a wrong one, is refused.
	noPassword := *u
	noPassword.User = url.User("postgres")
	wantAuthRefused(t, "TCP without a password", connectErr(ctx, noPassword.String()))
	wrong := *u
	wrong.User = url.UserPassword("postgres", pw+"x")
	wantAuthRefused(t, "TCP with a wrong password", connectErr(ctx, wrong.String()))
	wantAuthRefused(t, "TCP with an empty password", connectErr(ctx,
		strings.Replace(s.DSN(), ":"+pw+"@", ":@", 1)))

	// So is the unix socket (reachable here because we own its directory or are root).
	socket := "host=" + s.dir + " port=" + strconv.Itoa(s.port) + " user=postgres dbname=postgres sslmode=disable"
	wantAuthRefused(t, "unix socket without a password", connectErr(ctx, socket))
	if err := connectErr(ctx, socket+" password="+pw); err != nil {
		t.Errorf("unix socket with the password: %v", err)
	}

	// No rule of pg_hba.conf trusts anyone.
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT type, coalesce(address, ''), auth_method FROM pg_hba_file_rules")
	if err != nil {
		t.Fatal(err)
	}
	var rules int
	for rows.Next() {
		var typ, addr, method string
		if err := rows.Scan(&typ, &addr, &method); err != nil {
			t.Fatal(err)
		}
		rules++
		if method != "scram-sha-256" {
			t.Errorf("pg_hba.conf rule %s %s uses %q, want scram-sha-256", typ, addr, method)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if rules == 0 {
		t.Error("pg_hba_file_rules is empty")
	}

	// The password file initdb read is gone.
	if _, err := os.Lstat(filepath.Join(s.dir, passwordFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("password file still exists after Start (err %v)", err)
	}

	// The socket lives in a directory only the server's user (and root) can enter.
	fi, err := os.Stat(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("cluster dir mode %v, want 0700", perm)
	}
	wantOwner := os.Geteuid()
	if s.runAs != nil {
		wantOwner = s.runAs.uid
	}
	if owner := int(fi.Sys().(*syscall.Stat_t).Uid); owner != wantOwner {
		t.Errorf("cluster dir owned by uid %d, want %d", owner, wantOwner)
	}
	if got := queryString(t, ctx, s.DSN(), "SHOW unix_socket_permissions"); got != "0700" {
		t.Errorf("unix_socket_permissions = %s, want 0700", got)
	}
	if os.Geteuid() == 0 {
		// As another user (nobody), the directory cannot even be listed.
		ls := exec.CommandContext(ctx, "ls", s.dir)
		ls.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := ls.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("user nobody listed the cluster dir: err %v, output %s", err, out)
		}
	}
}

// TestClusterListensOnlyOnLoopback checks that no address but 127.0.0.1
// reaches the server.
func TestClusterListensOnlyOnLoopback(t *testing.T) {
	isolatedTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := startServer(t, ctx)

	if got := queryString(t, ctx, s.DSN(), "SHOW listen_addresses"); got != "127.0.0.1" {
		t.Errorf("listen_addresses = %q, want 127.0.0.1", got)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	others := 0
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.Equal(net.IPv4(127, 0, 0, 1)) || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		others++
		addr := net.JoinHostPort(ipn.IP.String(), strconv.Itoa(s.port))
		if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the server accepts connections on %s", addr)
		}
	}
	t.Logf("checked %d addresses other than 127.0.0.1", others)
}
