// Package localpg starts a throwaway PostgreSQL cluster from the server binaries
// installed on the machine (initdb, pg_ctl, postgres), for tests and demos that
// need a real database but have no Docker and no TASQ_DATABASE_URL.
//
// A cluster lives in a fresh directory under os.TempDir() (mode 0700, owned by
// the user the server runs as), listens only on 127.0.0.1 and on a unix socket
// inside that directory, and is removed by Stop. Every connection, over TCP or
// the socket, must authenticate with SCRAM-SHA-256 as the "postgres" superuser
// with a password made from crypto/rand for that cluster alone; the URLs that
// DSN, DSNFor and CreateDatabase return carry it. Other users of the machine
// can neither guess it nor reach the socket. When the process runs as root,
// the cluster runs as the "postgres" OS user, because PostgreSQL refuses to run
// as root.
//
// A process that dies without calling Stop leaves its cluster behind; the next
// Start on the machine finds such clusters (their owner process is gone), stops
// them and removes their directories. It touches only directories that it
// could have made itself (owned by this user, or by root or the "postgres" user
// when it runs as root; not symlinks; writable by nobody else), and stops a
// server only after /proc shows that the process named in its postmaster.pid
// is a postgres serving that very directory.
package localpg

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/freeport"
)

// ErrNotInstalled is returned by Start when the PostgreSQL server binaries
// cannot be found (and were not, or could not be, installed).
var ErrNotInstalled = errors.New("localpg: PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; " +
	"install them with `apt-get install -y postgresql`, or set TASQ_DATABASE_URL to use an existing server")

// dirPrefix names the temporary directories of clusters started by this package.
const dirPrefix = "tasq-localpg-"

// ownerFile, inside a cluster's directory, holds the pid of the process that started it.
const ownerFile = "owner.pid"

// passwordFile, inside a cluster's directory, holds the superuser's password
// while initdb runs; it is removed right after.
const passwordFile = "pwfile"

// superuser is the role initdb creates and the URLs name.
const superuser = "postgres"

// Options configures Start.
type Options struct {
	// Install, when the binaries are missing and the process runs as root, runs
	// `apt-get update` and `apt-get install -y postgresql` before giving up.
	Install bool

	// Fast trades durability for speed, for tests: fsync=off,
	// synchronous_commit=off and full_page_writes=off. A crash of such a
	// cluster may corrupt it; it is thrown away anyway.
	Fast bool

	// Logf, when set, receives progress messages (one line each, no newline).
	Logf func(format string, args ...any)

	// search overrides where binaries are looked for; nil means PATH and
	// /usr/lib/postgresql/*/bin. Set only by this package's tests.
	search *searchPath
}

// Server is a running throwaway PostgreSQL cluster. Its methods are safe for
// concurrent use.
type Server struct {
	bins    binaries
	dir     string // temporary directory: data/, server.log, owner.pid, unix socket
	dataDir string
	logFile string
	port    int
	runAs   *runAs // nil when the binaries run as the current user
	// password is the superuser's password, random for each cluster; it is
	// what keeps other local users out of the cluster.
	password string
	logf     func(format string, args ...any)

	stopOnce sync.Once
	stopErr  error
}

// Start creates, starts and waits for a new cluster. The caller must call Stop.
//
// It returns an error wrapping ErrNotInstalled when no server binaries are found.
// Other errors include the tail of the server log when the server was started.
func Start(ctx context.Context, opts Options) (*Server, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	began := time.Now()

	bins, err := findBinaries(opts.search)
	if errors.Is(err, ErrNotInstalled) && opts.Install {
		if ierr := install(ctx, logf); ierr != nil {
			return nil, fmt.Errorf("%w (automatic install failed: %w)", ErrNotInstalled, ierr)
		}
		bins, err = findBinaries(opts.search)
	}
	if err != nil {
		return nil, err
	}
	logf("localpg: using PostgreSQL binaries in %s", filepath.Dir(bins.pgCtl))

	ra, err := currentRunAs()
	if err != nil {
		return nil, err
	}
	reapStale(ctx, bins, ra, logf)

	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("localpg: create temporary directory: %w; check that os.TempDir() (%s) is writable or set TMPDIR", err, os.TempDir())
	}
	s := &Server{
		bins:     bins,
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		logFile:  filepath.Join(dir, "server.log"),
		runAs:    ra,
		password: newPassword(),
		logf:     logf,
	}
	if err := s.prepareDir(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.initdb(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.startWithFreePort(ctx, opts.Fast); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	logf("localpg: PostgreSQL ready at 127.0.0.1:%d (dir %s) in %s", s.port, s.dir, time.Since(began).Round(time.Millisecond))
	return s, nil
}

// DSN returns the URL of the cluster's "postgres" database as the "postgres"
// superuser, with the cluster's password, e.g.
// postgres://postgres:PASSWORD@127.0.0.1:54321/postgres?sslmode=disable.
// The URL is a secret: whoever has it controls the cluster and can run
// commands as the server's OS user.
func (s *Server) DSN() string { return s.DSNFor("postgres") }

// DSNFor returns the URL of database db on the cluster as the "postgres"
// superuser, with the cluster's password (see DSN).
func (s *Server) DSNFor(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, s.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name, copied from template (the server's
// default, template1, when template is ""), and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name, template string) (dsn string, err error) {
	if name == "" {
		return "", errors.New("localpg: create database: empty name; pass a database name")
	}
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		return "", fmt.Errorf("localpg: create database %q: connect to the server: %w; is it still running (see %s)?", name, err, s.logFile)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return "", fmt.Errorf("localpg: create database %q (template %q): %w; pick an unused name and an existing template nobody is connected to", name, template, err)
	}
	return s.DSNFor(name), nil
}

// Stop shuts the cluster down (pg_ctl stop -m fast), waits for it to exit and
// removes its temporary directory. It is idempotent: later calls return the
// result of the first.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var errs []error
		if err := stopCluster(ctx, s.bins, s.runAs, s.dataDir, "fast"); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, logTail(s.logFile)))
		}
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("localpg: remove %s: %w; remove it by hand", s.dir, err))
		}
		s.stopErr = errors.Join(errs...)
		if s.stopErr == nil {
			s.logf("localpg: PostgreSQL on port %d stopped and %s removed", s.port, s.dir)
		}
	})
	return s.stopErr
}

// prepareDir records the owner pid for reapStale and makes the temporary
// directory private to the user the server runs as: it holds the unix socket,
// so only that user (and root) may reach the server through it.
func (s *Server) prepareDir() error {
	if err := os.WriteFile(filepath.Join(s.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("localpg: write owner file: %w", err)
	}
	// os.MkdirTemp already uses 0700; say so explicitly, whatever the umask.
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("localpg: chmod %s: %w", s.dir, err)
	}
	if s.runAs == nil {
		return nil
	}
	if err := checkTraversable(filepath.Dir(s.dir)); err != nil {
		return err
	}
	if err := os.Chown(s.dir, s.runAs.uid, s.runAs.gid); err != nil {
		return fmt.Errorf("localpg: give %s to the %q user: %w", s.dir, s.runAs.name, err)
	}
	return nil
}

// initdb creates the cluster with password authentication (SCRAM-SHA-256)
// for every connection, local and TCP, and the superuser's password taken from
// a file that only the server's user can read and that is removed afterwards.
func (s *Server) initdb(ctx context.Context) error {
	began := time.Now()
	pwfile, err := s.writePasswordFile()
	if err != nil {
		return err
	}
	out, err := s.run(ctx, s.bins.initdb,
		"-D", s.dataDir, "-U", superuser, "--auth=scram-sha-256", "--pwfile="+pwfile,
		"-E", "UTF8", "--locale=C", "--no-sync")
	if rerr := os.Remove(pwfile); rerr != nil && err == nil {
		return fmt.Errorf("localpg: remove the password file %s: %w; remove it by hand", pwfile, rerr)
	}
	if err != nil {
		return fmt.Errorf("localpg: initdb failed: %w\n%s", err, tail(out, 20))
	}
	s.logf("localpg: initdb took %s", time.Since(began).Round(time.Millisecond))
	return nil
}

// writePasswordFile writes the superuser's password into a new file in the
// cluster's directory, readable and writable only by the server's user, and
// returns its path.
func (s *Server) writePasswordFile() (path string, err error) {
	path = filepath.Join(s.dir, passwordFile)
	// O_EXCL: never write the password through something already there.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("localpg: create the password file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("localpg: write the password file: %w", cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if s.runAs != nil {
		if err := f.Chown(s.runAs.uid, s.runAs.gid); err != nil {
			return "", fmt.Errorf("localpg: give the password file to the %q user: %w", s.runAs.name, err)
		}
	}
	if _, err := f.WriteString(s.password + "\n"); err != nil {
		return "", fmt.Errorf("localpg: write the password file: %w", err)
	}
	return path, nil
}

// newPassword returns a random password: 128 bits from crypto/rand, in
// base32 characters that need no escaping in a URL or a password file.
func newPassword() string { return rand.Text() }

// startWithFreePort picks a free port and starts the server on it, trying again
// with another port when something else took it in between.
func (s *Server) startWithFreePort(ctx context.Context, fast bool) error {
	const attempts = 5
	var lastErr error
	for i := 0; i < attempts; i++ {
		port, err := freeport.Loopback()
		if err != nil {
			return err
		}
		s.port = port
		_ = os.Remove(s.logFile)
		err = s.startOn(ctx, port, fast)
		if err == nil {
			return nil
		}
		lastErr = err
		log := logTail(s.logFile)
		if !strings.Contains(log, "could not bind") && !strings.Contains(log, "already in use") && !strings.Contains(log, "could not create any TCP/IP sockets") {
			return err
		}
		s.logf("localpg: port %d was taken, trying another", port)
		// pg_ctl may have left a half-started server; make sure it is gone.
		_ = stopCluster(ctx, s.bins, s.runAs, s.dataDir, "immediate")
	}
	return fmt.Errorf("localpg: no free port after %d attempts: %w", attempts, lastErr)
}

func (s *Server) startOn(ctx context.Context, port int, fast bool) error {
	opts := []string{
		"-c listen_addresses=127.0.0.1",
		"-p " + strconv.Itoa(port),
		"-k " + shellQuote(s.dir),
		"-c unix_socket_permissions=0700",
		"-c password_encryption=scram-sha-256",
		"-c max_connections=200",
	}
	if fast {
		opts = append(opts, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	out, err := s.run(ctx, s.bins.pgCtl,
		"-D", s.dataDir, "-l", s.logFile, "-w", "-t", "60", "-o", strings.Join(opts, " "), "start")
	if err != nil {
		return fmt.Errorf("localpg: pg_ctl start on port %d failed: %w\n%s\nserver log:\n%s", port, err, tail(out, 10), logTail(s.logFile))
	}
	return nil
}

// waitReady connects with pgx until the server answers a query.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var lastErr error
	for {
		attempt, acancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attempt, s.DSN())
		if err == nil {
			var one int
			err = conn.QueryRow(attempt, "SELECT 1").Scan(&one)
			_ = conn.Close(attempt)
		}
		acancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("localpg: server on port %d did not accept connections: %w (last error: %w)\nserver log:\n%s",
				s.port, ctx.Err(), lastErr, logTail(s.logFile))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run runs a PostgreSQL binary as the server's user, in the temporary
// directory, and returns its combined output.
func (s *Server) run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := command(ctx, s.runAs, bin, args...)
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// command builds an exec.Cmd for a PostgreSQL binary with a clean environment.
func command(ctx context.Context, ra *runAs, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv(ra)
	cmd.WaitDelay = 5 * time.Second
	ra.apply(cmd)
	return cmd
}

// cleanEnv drops libpq and locale variables that could redirect or break the
// tools, and sets HOME for the server's user.
func cleanEnv(ra *runAs) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" || (ra != nil && k == "HOME") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C", "LANG=C")
	if ra != nil {
		env = append(env, "HOME="+ra.home)
	}
	return env
}

// stopCluster stops the server of dataDir if it runs; mode is a pg_ctl -m mode.
func stopCluster(ctx context.Context, bins binaries, ra *runAs, dataDir, mode string) error {
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return nil // never started, or already stopped
	}
	cmd := command(ctx, ra, bins.pgCtl, "-D", dataDir, "-m", mode, "-w", "-t", "60", "stop")
	cmd.Dir = filepath.Dir(dataDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, serr := os.Stat(filepath.Join(dataDir, "postmaster.pid")); errors.Is(serr, os.ErrNotExist) {
			return nil // it went away on its own
		}
		return fmt.Errorf("localpg: pg_ctl stop -m %s for %s failed: %w\n%s; stop the postgres process by hand (its pid is the first line of postmaster.pid)", mode, dataDir, err, tail(out, 10))
	}
	return nil
}

// checkTraversable reports an error when the server's user could not reach
// entries of dir because an ancestor lacks the search (x) bit for others.
func checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("localpg: stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("localpg: the postgres user cannot enter %s (mode %v), so it cannot use a cluster under %s; set TMPDIR to a directory such as /tmp", d, fi.Mode().Perm(), dir)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// shellQuote quotes s for /bin/sh, which pg_ctl uses to start the server.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// logTail returns the last lines of the server log, or a note that it is missing.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	return tail(b, 30)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
