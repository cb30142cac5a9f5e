//go:build unix

package testmysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/tasqhq/tasq/internal/freeport"
	"github.com/tasqhq/tasq/internal/staledir"
)

// errNotInstalled means no MariaDB server binaries were found.
var errNotInstalled = errors.New("MariaDB server binaries (mariadbd, mariadb-install-db) not found on PATH or in /usr/sbin, /usr/bin, /usr/local/mysql/bin; " +
	"install them with `apt-get install -y mariadb-server` (no service needs to run)")

// dirPrefix names the temporary directories of servers started by this package.
const dirPrefix = "tasq-testmysql-"

// ownerFile, inside a server's directory, holds the pid of the test process
// that started it.
const ownerFile = "owner.pid"

// serverArgs trade durability for speed: the server is thrown away.
func serverArgs() []string {
	return []string{
		"--innodb-flush-log-at-trx-commit=0",
		"--innodb-doublewrite=0",
		"--innodb-log-file-size=16M",
		"--innodb-buffer-pool-size=128M",
		"--skip-log-bin",
		"--skip-name-resolve",
		"--max-connections=500",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
	}
}

// localServer is a throwaway MariaDB server started from the local binaries.
type localServer struct {
	dir     string // data/, error.log, mysqld.pid, mysqld.sock, owner.pid
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the server process has exited
	waitErr error         // valid after exited is closed
	logf    func(format string, args ...any)

	stopOnce sync.Once
	stopErr  error
}

// binaries are the absolute paths of the MariaDB tools.
type binaries struct {
	server, installDB string
}

func findBinaries() (binaries, error) {
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/local/mysql/bin")
	find := func(names ...string) string {
		for _, name := range names {
			for _, d := range dirs {
				if d == "" {
					continue
				}
				p := filepath.Join(d, name)
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
					return p
				}
			}
		}
		return ""
	}
	b := binaries{server: find("mariadbd"), installDB: find("mariadb-install-db")}
	if b.server == "" || b.installDB == "" {
		return b, errNotInstalled
	}
	return b, nil
}

// startLocal initialises a data directory and starts mariadbd on a free port
// of 127.0.0.1, with a root user that has no password.
func startLocal(ctx context.Context, logf func(string, ...any)) (*localServer, error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	reapStale(logf)
	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w; check that %s is writable or set TMPDIR", err, os.TempDir())
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("write owner file: %w", err)
	}
	s := &localServer{dir: dir, logf: logf}

	began := time.Now()
	args := []string{"--no-defaults", "--datadir=" + s.dataDir(), "--auth-root-authentication-method=normal", "--skip-test-db"}
	args = append(append(args, userArgs()...), serverArgs()...)
	cmd := exec.CommandContext(ctx, bins.installDB, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("%s failed: %w\n%s", filepath.Base(bins.installDB), err, tail(out, 20))
	}
	logf("testmysql: %s took %s", filepath.Base(bins.installDB), time.Since(began).Round(time.Millisecond))

	const attempts = 5
	for i := 0; ; i++ {
		err = s.start(ctx, bins.server)
		if err == nil {
			return s, nil
		}
		_ = s.kill()
		if i == attempts-1 || !strings.Contains(s.logTail(), "already in use") {
			break
		}
		logf("testmysql: port %d was taken, trying another", s.port)
	}
	_ = os.RemoveAll(dir)
	return nil, err
}

func (s *localServer) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *localServer) logFile() string { return filepath.Join(s.dir, "error.log") }

// userArgs runs the server as root when the tests run as root (mariadbd
// refuses to otherwise); as any other user it runs as that user.
func userArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// start runs mariadbd on a free port and waits until root can connect.
func (s *localServer) start(ctx context.Context, server string) error {
	port, err := freeport.Loopback()
	if err != nil {
		return err
	}
	s.port = port
	_ = os.Remove(s.logFile())
	args := []string{"--no-defaults",
		"--datadir=" + s.dataDir(),
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--socket=" + filepath.Join(s.dir, "mysqld.sock"),
		"--pid-file=" + filepath.Join(s.dir, "mysqld.pid"),
		"--log-error=" + s.logFile(),
	}
	args = append(append(args, userArgs()...), serverArgs()...)
	// Not CommandContext: the server outlives the setup context; Stop ends it.
	cmd := exec.Command(server, args...)
	cmd.Dir = s.dir
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", server, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	s.logf("testmysql: mariadbd started, pid %d, port %d", cmd.Process.Pid, port)
	return s.waitReady(ctx)
}

// waitReady connects until the server answers, it exits, or 60s pass.
func (s *localServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cfg := s.config()
	cfg.Timeout = 2 * time.Second
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var lastErr error
	for {
		attempt, acancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.PingContext(attempt)
		acancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-s.exited:
			return fmt.Errorf("mariadbd on port %d exited before accepting connections (%v)\nserver log:\n%s", s.port, s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("mariadbd on port %d did not accept connections: %w (last error: %w)\nserver log:\n%s", s.port, ctx.Err(), lastErr, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// config is the root account over TCP on 127.0.0.1, without a database.
func (s *localServer) config() *gomysql.Config {
	cfg := gomysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	return cfg
}

// stop shuts the server down (SIGTERM: a clean shutdown), waits for it, kills
// it after 60s, and removes its directory. Idempotent.
func (s *localServer) stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if err := s.terminate(60 * time.Second); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w; remove it by hand", s.dir, err))
		}
		s.stopErr = errors.Join(errs...)
		if s.stopErr == nil {
			s.logf("testmysql: mariadbd on port %d stopped and %s removed", s.port, s.dir)
		}
	})
	return s.stopErr
}

// terminate sends SIGTERM to the server's pid and waits; after grace it
// sends SIGKILL.
func (s *localServer) terminate(grace time.Duration) error {
	if s.cmd == nil {
		return nil
	}
	select {
	case <-s.exited:
		return nil
	default:
	}
	pid := s.cmd.Process.Pid
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop mariadbd (pid %d): %w", pid, err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(grace):
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
		return fmt.Errorf("mariadbd (pid %d) ignored SIGTERM for %s and was killed\nserver log:\n%s", pid, grace, s.logTail())
	case <-time.After(10 * time.Second):
		return fmt.Errorf("mariadbd (pid %d) survived SIGKILL; kill it by hand", pid)
	}
}

// kill ends a server that failed to start.
func (s *localServer) kill() error {
	return s.terminate(5 * time.Second)
}

func (s *localServer) logTail() string {
	b, err := os.ReadFile(s.logFile())
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	return tail(b, 30)
}

// reapStale stops servers and removes directories left behind by test
// processes that died without stopping them. Before it kills or removes
// anything it makes sure (see staledir) that the directory is one this package
// could have made, owned by the current user (the server runs as that user,
// root included), and that the process dir/mysqld.pid names is a mariadbd
// whose working directory is that very dir/data (mariadbd changes into its
// data directory); anything else is left alone and logged.
func reapStale(logf func(string, ...any)) {
	staledir.Reap(staledir.Config{
		Prefix:    dirPrefix,
		OwnerFile: ownerFile,
		Exes:      []string{"mariadbd", "mysqld"},
		Logf:      func(format string, args ...any) { logf("testmysql: "+format, args...) },
		Stop: func(l staledir.Leftover) error {
			server, err := l.Server("mysqld.pid", "data")
			if err != nil || server == nil {
				return err
			}
			defer server.Release()
			logf("testmysql: killing mariadbd %d left behind in %s by process %d", server.Pid, l.Dir, l.Owner)
			return killAndWait(server, 10*time.Second)
		},
	})
}

// killAndWait sends SIGKILL to p and waits up to timeout for it to be gone.
func killAndWait(p *os.Process, timeout time.Duration) error {
	if err := p.Kill(); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return nil
		}
		return fmt.Errorf("kill mariadbd %d: %w", p.Pid, err)
	}
	deadline := time.Now().Add(timeout)
	for !errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone) {
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd %d still exists %s after SIGKILL", p.Pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
