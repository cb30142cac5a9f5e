// Package testbouncer starts a throwaway PgBouncer in front of a PostgreSQL
// server, for tests of how TasQ behaves behind a connection pooler.
//
// Each call to Start runs its own pgbouncer process, from the binary of the
// Debian package (`apt-get install -y pgbouncer`; no service needs to run),
// listening only on 127.0.0.1, on a free port, with its configuration, its
// auth file and its log in a fresh temporary directory. The test's cleanup
// stops it by its pid and removes the directory; on Linux it also gets
// SIGTERM if the test binary dies. PgBouncer refuses to run as root, so when
// the tests run as root it runs as the "postgres" OS user, as the servers of
// internal/localpg do.
//
//	dsn := testpg.NewDatabase(t)
//	b := testbouncer.Start(t, testbouncer.Options{Server: dsn, PoolMode: testbouncer.Transaction, PoolSize: 2})
//	a, err := postgres.New(ctx, b.URL(dsn)) // the same database, through PgBouncer
//
// Every database name on the server is reachable through the bouncer (a "*"
// fallback entry), each with a pool of its own, as the user of
// Options.Server with its password. If pgbouncer is not installed, Start
// fails the test and says how to install it: tests that need it fail loudly
// rather than skip.
package testbouncer

import (
	"context"
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
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasqhq/tasq/internal/freeport"
	"github.com/tasqhq/tasq/internal/staledir"
)

// PoolMode is PgBouncer's pool_mode: when a server connection goes back to
// the pool.
type PoolMode string

// The pool modes PgBouncer has.
const (
	// Session gives a client one server connection until it disconnects.
	Session PoolMode = "session"
	// Transaction gives a client a server connection for one transaction
	// (or one statement outside a transaction); the next may run on another.
	Transaction PoolMode = "transaction"
	// Statement gives a client a server connection for one statement and
	// refuses multi-statement transactions.
	Statement PoolMode = "statement"
)

// installHint says how to get the binary.
const installHint = "install it with `apt-get install -y pgbouncer` (no service needs to run: the tests start their own on 127.0.0.1)"

// Options configures Start.
type Options struct {
	// Server is the DSN (a postgres:// URL or key=value string) of the
	// PostgreSQL server to pool, e.g. a DSN from testpg.NewDatabase. Its
	// host and port are where PgBouncer connects; its user and password are
	// the only login PgBouncer accepts and the one it uses on the server.
	Server string
	// PoolMode is PgBouncer's pool_mode; "" means Transaction.
	PoolMode PoolMode
	// PoolSize is default_pool_size, the server connections per database
	// and user; 0 means 2, small enough that clients really share them.
	PoolSize int
	// Extra lines for the [pgbouncer] section, e.g. "max_prepared_statements = 100".
	Extra []string
}

// Bouncer is a running pgbouncer process. Its methods are safe for
// concurrent use.
type Bouncer struct {
	bin     string
	dir     string
	logPath string
	port    int
	user    string
	pass    string
	mode    PoolMode
	size    int
	version string
	extra   []string
	srvHost string // where PgBouncer connects
	srvPort uint16
	quit    syscall.Signal // what shuts this version down at once
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited

	stopOnce sync.Once
	stopErr  error
}

// Start starts a PgBouncer in front of opts.Server, waits until its admin
// console answers, and stops it when the test ends. It fails the test, with
// the reason and the tail of PgBouncer's log, when it cannot.
func Start(t testing.TB, opts Options) *Bouncer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := start(ctx, opts)
	if err != nil {
		t.Fatalf("testbouncer: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("testbouncer: %v", err)
		}
	})
	t.Logf("testbouncer: %s (pid %d, pool_mode=%s, default_pool_size=%d) on 127.0.0.1:%d", b.version, b.Pid(), b.mode, b.size, b.port)
	return b
}

// URL returns dsn (a postgres:// URL or key=value string on the server
// given as Options.Server) with its host and port replaced by the
// bouncer's, so that it reaches the same database through PgBouncer. The
// user and password must be those of Options.Server.
func (b *Bouncer) URL(dsn string) string {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Host = b.Addr()
			return u.String()
		}
	}
	// key=value: a later keyword overrides an earlier one.
	return dsn + " host=127.0.0.1 port=" + strconv.Itoa(b.port)
}

// AdminURL returns the URL of PgBouncer's admin console (the virtual
// database "pgbouncer"), where SHOW POOLS, SHOW CONFIG and the like work.
// The console speaks only the simple query protocol: connect with
// default_query_exec_mode=simple_protocol, which the URL already asks for.
func (b *Bouncer) AdminURL() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(b.user, b.pass),
		Host:     b.Addr(),
		Path:     "/pgbouncer",
		RawQuery: "sslmode=disable&default_query_exec_mode=simple_protocol",
	}
	return u.String()
}

// Addr returns the bouncer's address, 127.0.0.1:PORT.
func (b *Bouncer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Pid returns the pgbouncer process's id.
func (b *Bouncer) Pid() int { return b.cmd.Process.Pid }

// Version returns what the running PgBouncer says it is (SHOW VERSION),
// e.g. "PgBouncer 1.18.0".
func (b *Bouncer) Version() string { return b.version }

// Log returns the last lines of PgBouncer's log, for test failure messages.
func (b *Bouncer) Log() string { return logTail(b.logPath) }

// Stop shuts the pgbouncer process down at once, whatever its clients do
// (SIGTERM before PgBouncer 1.23, SIGQUIT since; SIGKILL after 10s), waits
// for it to exit and removes its directory. It is idempotent: later calls
// return the result of the first.
func (b *Bouncer) Stop() error {
	b.stopOnce.Do(func() {
		var errs []error
		select {
		case <-b.exited:
		default:
			if err := b.cmd.Process.Signal(b.quit); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("signal pgbouncer (pid %d): %w", b.cmd.Process.Pid, err))
			}
			select {
			case <-b.exited:
			case <-time.After(10 * time.Second):
				_ = b.cmd.Process.Kill()
				<-b.exited
				errs = append(errs, fmt.Errorf("pgbouncer (pid %d) ignored %v for 10s and was killed", b.cmd.Process.Pid, b.quit))
			}
		}
		if err := os.RemoveAll(b.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w; remove it by hand", b.dir, err))
		}
		b.stopErr = errors.Join(errs...)
	})
	return b.stopErr
}

// start checks the options, prepares the directory and starts pgbouncer on
// a free port, trying another port when the chosen one was taken.
func start(ctx context.Context, opts Options) (*Bouncer, error) {
	if opts.Server == "" {
		return nil, errors.New("Options.Server is empty; pass the DSN of the server to pool, e.g. from testpg.NewDatabase")
	}
	srv, err := pgconn.ParseConfig(opts.Server)
	if err != nil {
		return nil, fmt.Errorf("parse Options.Server: %w", err)
	}
	mode := opts.PoolMode
	if mode == "" {
		mode = Transaction
	}
	switch mode {
	case Session, Transaction, Statement:
	default:
		return nil, fmt.Errorf("Options.PoolMode %q is not a PgBouncer pool_mode; use testbouncer.Session, Transaction or Statement", mode)
	}
	size := opts.PoolSize
	if size == 0 {
		size = 2
	}
	if size < 0 {
		return nil, fmt.Errorf("Options.PoolSize %d is negative", size)
	}
	for _, s := range []string{srv.User, srv.Password} {
		if strings.ContainsAny(s, "\"\n\r") {
			return nil, errors.New("the user or password of Options.Server contains a quote or a line break, which the auth file cannot hold")
		}
	}
	bin, err := findBinary(binaryDirs())
	if err != nil {
		return nil, err
	}
	quit, err := quitSignal(bin)
	if err != nil {
		return nil, err
	}
	ra, err := currentRunAs()
	if err != nil {
		return nil, err
	}
	removeStale(ra)
	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w; check that %s is writable or set TMPDIR", err, os.TempDir())
	}
	b := &Bouncer{
		bin: bin, dir: dir, logPath: filepath.Join(dir, "pgbouncer.log"),
		user: srv.User, pass: srv.Password, mode: mode, size: size,
		extra: opts.Extra, srvHost: srv.Host, srvPort: srv.Port, quit: quit,
	}
	if err := b.prepare(ra); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	const attempts = 5
	var lastErr error
	for range attempts {
		port, err := freeport.Loopback()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		err = b.startOn(ctx, ra, port)
		if err == nil {
			return b, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// prepare writes the owner file and the auth file and gives the directory
// to the user pgbouncer runs as. The configuration, which names the port,
// is written by startOn.
func (b *Bouncer) prepare(ra *runAs) error {
	if err := os.WriteFile(filepath.Join(b.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(b.dir, ownerFile), err)
	}
	// The auth file holds the password in plain text, which lets PgBouncer
	// answer the server's SCRAM challenge itself; only its user may read it.
	auth := `"` + b.user + `" "` + b.pass + `"` + "\n"
	if err := writePrivate(filepath.Join(b.dir, authFile), auth, ra); err != nil {
		return err
	}
	// os.MkdirTemp already uses 0700; say so explicitly, whatever the umask.
	if err := os.Chmod(b.dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", b.dir, err)
	}
	if ra != nil {
		if err := checkTraversable(filepath.Dir(b.dir)); err != nil {
			return err
		}
		if err := os.Chown(b.dir, ra.uid, ra.gid); err != nil {
			return fmt.Errorf("give %s to the %q user: %w", b.dir, ra.name, err)
		}
	}
	return nil
}

// config returns pgbouncer.ini for port.
func (b *Bouncer) config(port int) string {
	host := b.srvHost
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	lines := []string{
		"[databases]",
		// The fallback entry: every database name is pooled, under its own name.
		fmt.Sprintf("* = host=%s port=%d", host, b.srvPort),
		"",
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		"listen_port = " + strconv.Itoa(port),
		"unix_socket_dir =", // no socket: nothing outside the directory, nothing to collide
		"auth_type = scram-sha-256",
		"auth_file = " + filepath.Join(b.dir, authFile),
		"admin_users = " + b.user,
		"pool_mode = " + string(b.mode),
		"default_pool_size = " + strconv.Itoa(b.size),
		"min_pool_size = 0",
		"reserve_pool_size = 0",
		"max_client_conn = 1000",
		"server_tls_sslmode = prefer",
		"ignore_startup_parameters = extra_float_digits",
		"log_connections = 0",
		"log_disconnections = 0",
	}
	lines = append(lines, b.extra...)
	return strings.Join(lines, "\n") + "\n"
}

// startOn writes the configuration for port, starts pgbouncer and waits
// until its admin console answers.
func (b *Bouncer) startOn(ctx context.Context, ra *runAs, port int) error {
	b.port = port
	ini := filepath.Join(b.dir, "pgbouncer.ini")
	_ = os.Remove(ini)
	if err := writePrivate(ini, b.config(port), ra); err != nil {
		return err
	}
	logFile, err := os.Create(b.logPath)
	if err != nil {
		return fmt.Errorf("create %s: %w", b.logPath, err)
	}
	defer logFile.Close()
	cmd := exec.Command(b.bin, ini)
	cmd.Dir = b.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = cleanEnv(ra)
	cmd.SysProcAttr = sysProcAttr(ra, b.quit)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.bin, err)
	}
	b.cmd = cmd
	b.exited = make(chan struct{})
	exited := b.exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := b.showVersion(ctx)
		if err == nil {
			b.version = v
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pgbouncer on 127.0.0.1:%d exited at start (%v); its log:\n%s", port, cmd.ProcessState, logTail(b.logPath))
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		b.stopProcess()
		return fmt.Errorf("pgbouncer on 127.0.0.1:%d did not answer within 30s (last error: %v); its log:\n%s", port, err, logTail(b.logPath))
	}
}

// stopProcess kills a pgbouncer that never became ready and waits for it.
func (b *Bouncer) stopProcess() {
	_ = b.cmd.Process.Kill()
	<-b.exited
}

// showVersion asks the admin console for PgBouncer's version.
func (b *Bouncer) showVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.AdminURL())
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	if err := conn.QueryRow(ctx, "SHOW VERSION").Scan(&v); err != nil {
		return "", err
	}
	return v, nil
}

// writePrivate writes a new file that only the user pgbouncer runs as may
// read.
func writePrivate(path, content string, ra *runAs) (err error) {
	// O_EXCL: never write a secret through something already there.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write %s: %w", path, cerr)
		}
	}()
	if ra != nil {
		if err := f.Chown(ra.uid, ra.gid); err != nil {
			return fmt.Errorf("give %s to the %q user: %w", path, ra.name, err)
		}
	}
	if _, err := f.WriteString(content); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// cleanEnv drops libpq variables, which PgBouncer does not need, and sets
// HOME for the user it runs as.
func cleanEnv(ra *runAs) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || (ra != nil && k == "HOME") {
			continue
		}
		env = append(env, kv)
	}
	if ra != nil {
		env = append(env, "HOME="+ra.home)
	}
	return env
}

// binaryDirs are where findBinary looks when pgbouncer is not on PATH; the
// Debian package puts it in /usr/sbin, which a non-root PATH often lacks.
func binaryDirs() []string {
	return []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin"}
}

// findBinary looks for pgbouncer on PATH, then in dirs.
func findBinary(dirs []string) (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, "pgbouncer")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("pgbouncer was not found on PATH or in %s; %s", strings.Join(dirs, ", "), installHint)
}

// quitSignal asks bin for its version (`pgbouncer --version`, which also
// shows that it runs) and returns the signal that makes that version shut
// down at once: SIGTERM did until PgBouncer 1.23, which made SIGTERM wait
// for every client to disconnect and SIGQUIT the immediate shutdown.
func quitSignal(bin string) (syscall.Signal, error) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w\n%s; reinstall it (`apt-get install --reinstall -y pgbouncer`)", bin, err, out)
	}
	var major, minor int
	line, _, _ := strings.Cut(string(out), "\n")
	if _, err := fmt.Sscanf(line, "PgBouncer %d.%d", &major, &minor); err != nil {
		return 0, fmt.Errorf("%s --version says %q, which names no PgBouncer version", bin, line)
	}
	if major > 1 || (major == 1 && minor >= 23) {
		return syscall.SIGQUIT, nil
	}
	return syscall.SIGTERM, nil
}

// checkTraversable reports an error when the user pgbouncer runs as could
// not reach entries of dir because an ancestor lacks the search (x) bit for
// others.
func checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the postgres user cannot enter %s (mode %v), so pgbouncer cannot read its configuration under %s; set TMPDIR to a directory such as /tmp", d, fi.Mode().Perm(), dir)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// dirPrefix names the temporary directories of bouncers started here; each
// holds ownerFile, the pid of the test binary that started it.
const (
	dirPrefix = "tasq-testbouncer-"
	ownerFile = "owner.pid"
	authFile  = "userlist.txt"
)

// removeStale removes the directories of bouncers whose test binary died
// without stopping them (on Linux the bouncer died with it). A directory is
// removed only when staledir accepts it (owned by the current user or by ra's
// user), so another user's directory, or a symlink to anything, is left
// alone.
func removeStale(ra *runAs) {
	c := staledir.Config{Prefix: dirPrefix, OwnerFile: ownerFile}
	if ra != nil {
		c.Owners = []int{ra.uid}
	}
	staledir.Reap(c)
}

// logTail returns the last lines of a log file, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
