// Package testredis gives every test package that needs Redis a server and
// isolated key prefixes on it.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		prefix := testredis.NewPrefix(t) // keys under it are deleted when the test ends
//		a, err := redis.NewFromClient(ctx, testredis.NewClient(t), redis.Options{Prefix: prefix})
//		...
//	}
//
// Main picks the server, in this order:
//
//  1. TASQ_REDIS_URL, when set (e.g. redis://127.0.0.1:6379/0): an existing
//     server. The tests touch only keys under their own prefixes
//     ("tasqtest:<pid>:<n>:") and delete them afterwards; they never flush a
//     database.
//  2. A throwaway redis-server from the local binary (e.g. after `apt-get
//     install -y redis-server`), listening on 127.0.0.1 only, on a free port,
//     without persistence (--save "" --appendonly no), in a temporary
//     directory. Main stops it by its pid after the tests, also on SIGINT and
//     SIGTERM; on Linux the server also gets SIGTERM if the test binary dies.
//
// If neither can be had, Main prints why and how to fix it and returns a
// non-zero code: tests that need Redis fail loudly rather than skip.
package testredis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/internal/freeport"
	"github.com/tasqhq/tasq/internal/staledir"
	"github.com/tasqhq/tasq/internal/testmain"
)

// EnvRedisURL names the environment variable that points the tests at an
// existing Redis server instead of starting one.
const EnvRedisURL = "TASQ_REDIS_URL"

// PrefixRoot starts every key prefix NewPrefix hands out.
const PrefixRoot = "tasqtest:"

// installHint says how to get a server.
const installHint = "install redis-server (`apt-get install -y redis-server`; no service needs to run, the tests start their own on 127.0.0.1), " +
	"or export " + EnvRedisURL + "=redis://127.0.0.1:6379/0 to use a running server"

// current is the harness set up by Main for this test binary.
var current atomic.Pointer[harness]

// harness is the server chosen by Main.
type harness struct {
	source string // where the server comes from, for messages
	url    string
	admin  *goredis.Client
	stop   func() error // stops what Main started; nil for TASQ_REDIS_URL
	seq    atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// Main sets up a Redis server (see the package documentation), runs the
// tests with m.Run, stops what it started and returns the exit code for
// os.Exit.
func Main(m testmain.Runner) int {
	return testmain.Serve(m, testmain.Setup{
		Name: "testredis", Need: "a Redis server", Timeout: time.Minute,
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

// URL returns the server's URL, e.g. redis://127.0.0.1:34567/0. It panics
// when called outside a test binary whose TestMain calls Main.
func URL() string {
	h := current.Load()
	if h == nil {
		panic("testredis: URL called before testredis.Main; add `func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }` to the package's tests")
	}
	return h.url
}

// NewPrefix returns a key prefix no other test uses ("tasqtest:<pid>:<n>:")
// and deletes every key under it when the test and its subtests end.
func NewPrefix(t testing.TB) string {
	t.Helper()
	h := mustHarness(t)
	prefix := fmt.Sprintf("%s%d:%d:", PrefixRoot, os.Getpid(), h.seq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := deletePrefix(ctx, h.admin, prefix); err != nil {
			t.Errorf("testredis: delete the keys under %q on %s: %v; delete them by hand", prefix, h.source, err)
		}
	})
	return prefix
}

// NewClient returns a client on the server, closed when the test ends.
func NewClient(t testing.TB) *goredis.Client {
	t.Helper()
	h := mustHarness(t)
	opt, err := goredis.ParseURL(h.url)
	if err != nil {
		t.Fatalf("testredis: parse %s: %v", h.url, err)
	}
	c := goredis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mustHarness(t testing.TB) *harness {
	t.Helper()
	h := current.Load()
	if h == nil {
		t.Fatal("testredis: no server; add `func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }` to this package's tests")
	}
	return h
}

// deletePrefix removes every key that starts with prefix. The prefixes
// NewPrefix makes contain no glob characters.
func deletePrefix(ctx context.Context, c *goredis.Client, prefix string) error {
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.Unlink(ctx, batch...).Err()
	}
	return nil
}

// setUp chooses and prepares the server.
func setUp(ctx context.Context, log *slog.Logger) (*harness, error) {
	if u := os.Getenv(EnvRedisURL); u != "" {
		h, err := newHarness(ctx, EnvRedisURL, u, nil)
		if err != nil {
			return nil, fmt.Errorf("%s is set but unusable: %w", EnvRedisURL, err)
		}
		return h, nil
	}
	bin, err := findServer(serverDirs())
	if err != nil {
		return nil, fmt.Errorf("%s is not set, and %w", EnvRedisURL, err)
	}
	began := time.Now()
	srv, err := startServer(ctx, bin, log)
	if err != nil {
		return nil, fmt.Errorf("%s is not set, and starting %s failed: %w", EnvRedisURL, bin, err)
	}
	log.Info("local redis-server started", "url", srv.url, "pid", srv.cmd.Process.Pid, "took", time.Since(began).Round(time.Millisecond))
	return newHarness(ctx, "local redis-server (pid "+strconv.Itoa(srv.cmd.Process.Pid)+")", srv.url, srv.stop)
}

// newHarness connects the admin client; on failure it calls stop itself.
func newHarness(ctx context.Context, source, u string, stop func() error) (*harness, error) {
	fail := func(err error) (*harness, error) {
		if stop != nil {
			err = errors.Join(err, stop())
		}
		return nil, err
	}
	opt, err := goredis.ParseURL(u)
	if err != nil {
		return fail(fmt.Errorf("parse the Redis URL %s: %w; use the form redis://[user:password@]HOST:PORT/DB", redact(u), err))
	}
	c := goredis.NewClient(opt)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = c.Ping(pingCtx).Err()
	cancel()
	if err != nil {
		_ = c.Close()
		return fail(fmt.Errorf("connect to %s: %w; is the server running and the URL right?", redact(u), err))
	}
	return &harness{source: source, url: u, admin: c, stop: stop}, nil
}

// close closes the admin client and stops the server; idempotent.
func (h *harness) close() error {
	h.closeOnce.Do(func() {
		var errs []error
		if err := h.admin.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the admin client: %w", err))
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

// serverDirs are where findServer looks when redis-server is not on PATH.
func serverDirs() []string {
	return []string{"/usr/bin", "/usr/local/bin", "/usr/sbin", "/opt/homebrew/bin"}
}

// findServer looks for redis-server on PATH, then in dirs.
func findServer(dirs []string) (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, "redis-server")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("redis-server was not found on PATH or in %s; %s", strings.Join(dirs, ", "), installHint)
}

// server is a redis-server process started by startServer.
type server struct {
	cmd    *exec.Cmd
	dir    string
	url    string
	exited chan struct{} // closed when the process has exited
}

// startServer starts redis-server on a free port of 127.0.0.1 and waits
// until it answers, trying another port when the chosen one was taken.
func startServer(ctx context.Context, bin string, log *slog.Logger) (*server, error) {
	removeStale(log)
	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w; check that %s is writable or set TMPDIR", err, os.TempDir())
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("write %s: %w", filepath.Join(dir, ownerFile), err)
	}
	const attempts = 5
	var lastErr error
	for range attempts {
		port, err := freeport.Loopback()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s, err := startOn(ctx, bin, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
		log.Info("port taken; trying another", "port", port)
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func startOn(ctx context.Context, bin, dir string, port int) (*server, error) {
	logPath := filepath.Join(dir, "redis.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", logPath, err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--loglevel", "notice",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{
		cmd:    cmd,
		dir:    dir,
		url:    "redis://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/0",
		exited: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	opt, _ := goredis.ParseURL(s.url)
	opt.MaxRetries = -1
	c := goredis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pingCtx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("redis-server on 127.0.0.1:%d exited at start (%v); its log:\n%s", port, cmd.ProcessState, logTail(logPath))
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		_ = s.stop()
		return nil, fmt.Errorf("redis-server on 127.0.0.1:%d did not answer PING within 30s (last error: %v); its log:\n%s", port, err, logTail(logPath))
	}
}

// stop sends SIGTERM to the server's pid, waits for it to exit (SIGKILL
// after 10s) and removes its directory.
func (s *server) stop() error {
	var errs []error
	select {
	case <-s.exited:
	default:
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("signal redis-server (pid %d): %w", s.cmd.Process.Pid, err))
		}
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			errs = append(errs, fmt.Errorf("redis-server (pid %d) ignored SIGTERM for 10s and was killed", s.cmd.Process.Pid))
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w; remove it by hand", s.dir, err))
	}
	return errors.Join(errs...)
}

// dirPrefix names the temporary directories of servers started here; each
// holds ownerFile, the pid of the test binary that started the server.
const (
	dirPrefix = "tasq-testredis-"
	ownerFile = "owner.pid"
)

// removeStale removes the directories of servers whose test binary died
// without stopping them. Only where the server is sure to have died with its
// parent (see dieWithParent) does it remove anything. A directory is removed
// only when staledir accepts it, so another user's directory, or a symlink to
// anything, is left alone and logged.
func removeStale(log *slog.Logger) {
	if !diesWithParent {
		return
	}
	staledir.Reap(staledir.Config{
		Prefix:    dirPrefix,
		OwnerFile: ownerFile,
		Logf:      func(format string, args ...any) { log.Info("testredis: " + fmt.Sprintf(format, args...)) },
	})
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

// redact hides the password of a URL for messages.
func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "(an unparsable URL)"
}
