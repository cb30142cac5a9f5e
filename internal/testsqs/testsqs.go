// Package testsqs gives test packages that need Amazon SQS a real
// SQS-compatible server: the fauxqs emulator (npm package, pinned in
// emulator/package.json), speaking SQS's JSON protocol on 127.0.0.1.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testsqs.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		client := testsqs.Client(t)  // static dummy credentials, us-east-1
//		prefix := testsqs.Prefix(t)  // queue names of this test only; deleted after it
//		...
//	}
//
// Main picks the server, in this order:
//
//  1. TASQ_SQS_ENDPOINT, when set (e.g. http://127.0.0.1:9324): an emulator
//     that is already running. It must accept any credentials.
//  2. Otherwise fauxqs from emulator/, started with Node.js on a free port of
//     127.0.0.1 (npm ci runs first when emulator/node_modules is missing) and
//     stopped by its pid after the tests, also on SIGINT and SIGTERM.
//
// If neither works, Main prints why and how to fix it and returns a non-zero
// code: tests that need SQS fail loudly rather than skip.
package testsqs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tasqhq/tasq/internal/testmain"
)

// EnvEndpoint names the environment variable that points the tests at a
// running SQS emulator instead of starting one.
const EnvEndpoint = "TASQ_SQS_ENDPOINT"

// Region is the region every test client uses.
const Region = "us-east-1"

// startTimeout bounds how long Main waits for the emulator (and npm ci).
const startTimeout = 2 * time.Minute

// current is the server chosen by Main for this test binary.
var current atomic.Pointer[server]

type server struct {
	endpoint string
	source   string
	stop     func() error // nil for TASQ_SQS_ENDPOINT
	seq      atomic.Int64

	stopOnce sync.Once
	stopErr  error
}

func (s *server) close() error {
	s.stopOnce.Do(func() {
		if s.stop != nil {
			s.stopErr = s.stop()
		}
	})
	return s.stopErr
}

// Main sets up the SQS server (see the package documentation), runs the
// tests with m.Run, stops what it started and returns the exit code for
// os.Exit.
func Main(m testmain.Runner) int {
	return testmain.Serve(m, testmain.Setup{
		Name: "testsqs", Need: "an SQS server", Timeout: startTimeout,
		Start: func(ctx context.Context, log *slog.Logger) (string, func() error, error) {
			h, err := setUp(ctx)
			if err != nil {
				return "", nil, err
			}
			current.Store(h)
			if testing.Verbose() {
				log.Info("using the SQS server", "source", h.source, "endpoint", h.endpoint)
			}
			return h.source, func() error { defer current.Store(nil); return h.close() }, nil
		},
	})
}

func mustServer(t testing.TB) *server {
	t.Helper()
	s := current.Load()
	if s == nil {
		t.Fatal("testsqs: no server; add `func TestMain(m *testing.M) { os.Exit(testsqs.Main(m)) }` to this package's tests")
	}
	return s
}

// Endpoint returns the emulator's URL, e.g. http://127.0.0.1:43127.
func Endpoint(t testing.TB) string {
	t.Helper()
	return mustServer(t).endpoint
}

// Options returns client options for the emulator: region us-east-1, static
// dummy credentials, BaseEndpoint = Endpoint. Tests may change them (say,
// the HTTP client) before awssqs.New.
func Options(t testing.TB) awssqs.Options {
	t.Helper()
	return clientOptions(Endpoint(t))
}

func clientOptions(endpoint string) awssqs.Options {
	return awssqs.Options{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("tasq-test", "tasq-test", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}

// Client returns an SQS client for the emulator (see Options).
func Client(t testing.TB) *awssqs.Client {
	t.Helper()
	return awssqs.New(Options(t))
}

// Prefix returns a queue-name prefix that no other test (or test binary)
// uses, so that a test sees only its own queues; every queue under it is
// deleted when the test ends.
func Prefix(t testing.TB) string {
	t.Helper()
	s := mustServer(t)
	prefix := fmt.Sprintf("t%d-%d-", os.Getpid(), s.seq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := Client(t)
		out, err := c.ListQueues(ctx, &awssqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix), MaxResults: aws.Int32(1000)})
		if err != nil {
			t.Errorf("testsqs: list queues with prefix %s to delete them: %v", prefix, err)
			return
		}
		for _, u := range out.QueueUrls {
			if _, err := c.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(u)}); err != nil {
				t.Errorf("testsqs: delete queue %s: %v", u, err)
			}
		}
	})
	return prefix
}

// setUp chooses the server.
func setUp(ctx context.Context) (*server, error) {
	if ep := os.Getenv(EnvEndpoint); ep != "" {
		if err := checkEndpoint(ep); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvEndpoint, ep, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := waitReady(wctx, ep); err != nil {
			return nil, fmt.Errorf("%s=%s does not answer: %w; start the emulator (see internal/testsqs/emulator/serve.mjs) or unset %s to let the tests start one",
				EnvEndpoint, ep, err, EnvEndpoint)
		}
		return &server{endpoint: strings.TrimRight(ep, "/"), source: EnvEndpoint}, nil
	}
	return startEmulator(ctx)
}

// checkEndpoint refuses anything but a plain http URL on the loopback
// interface: the tests send dummy credentials and create and delete queues.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("not a URL: %w; use http://127.0.0.1:PORT", err)
	}
	if u.Scheme != "http" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" && u.Hostname() != "::1") || u.Port() == "" {
		return errors.New("the tests only talk to an emulator on this machine; use http://127.0.0.1:PORT")
	}
	return nil
}

// emulatorDir returns internal/testsqs/emulator in the source tree.
func emulatorDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the testsqs package's source directory")
	}
	dir := filepath.Join(filepath.Dir(file), "emulator")
	if _, err := os.Stat(filepath.Join(dir, "serve.mjs")); err != nil {
		return "", fmt.Errorf("emulator files missing: %w", err)
	}
	return dir, nil
}

const howToFix = "Fix one of them: install Node.js 20+ and npm (`apt-get install -y nodejs npm`), " +
	"or start an SQS emulator on 127.0.0.1 and export " + EnvEndpoint + "=http://127.0.0.1:PORT"

// startEmulator runs emulator/serve.mjs with node on a free port and waits
// until it answers.
func startEmulator(ctx context.Context) (*server, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%s is not set, and Node.js is not installed (no `node` on PATH) to start the fauxqs emulator.\n%s", EnvEndpoint, howToFix)
	}
	dir, err := emulatorDir()
	if err != nil {
		return nil, fmt.Errorf("%s is not set, and the emulator cannot be started: %w", EnvEndpoint, err)
	}
	if err := install(ctx, dir); err != nil {
		return nil, err
	}

	cmd := exec.Command(node, "serve.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FAUXQS_PORT=0", "FAUXQS_LOGGER=false", "TASQ_EXIT_WITH_PARENT=1")
	// The emulator exits when this pipe closes, so a test binary that dies
	// without cleaning up does not leave it behind.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &limitedWriter{n: 8 << 10}
	cmd.Stderr = stderr
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the emulator (%s serve.mjs in %s): %w", node, dir, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = stdin.Close()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop the emulator (pid %d): %w", cmd.Process.Pid, err)
		}
		select {
		case <-exited:
			return nil
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("the emulator (pid %d) ignored SIGTERM for 10s and was killed", cmd.Process.Pid)
		}
	}

	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "fauxqs listening on "); ok {
				addr <- strings.TrimSpace(a)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var endpoint string
	select {
	case endpoint = <-addr:
	case err := <-exited:
		exited <- err // for stop
		return nil, fmt.Errorf("the fauxqs emulator exited at start (%v):\n%s\n%s", err, stderr.String(), howToFix)
	case <-ctx.Done():
		return nil, errors.Join(fmt.Errorf("the fauxqs emulator did not report its address within %v:\n%s", startTimeout, stderr.String()), stop())
	}
	if err := checkEndpoint(endpoint); err != nil {
		return nil, errors.Join(fmt.Errorf("the emulator reported the address %s: %w", endpoint, err), stop())
	}
	if err := waitReady(ctx, endpoint); err != nil {
		return nil, errors.Join(fmt.Errorf("the emulator at %s does not answer: %w\n%s", endpoint, err, stderr.String()), stop())
	}
	return &server{endpoint: endpoint, source: fmt.Sprintf("fauxqs (pid %d)", cmd.Process.Pid), stop: stop}, nil
}

// install runs npm ci in dir when fauxqs is not installed there, holding a
// lock so that test binaries started together install once.
func install(ctx context.Context, dir string) error {
	installed := func() bool {
		_, err := os.Stat(filepath.Join(dir, "node_modules", "fauxqs", "package.json"))
		return err == nil
	}
	if installed() {
		return nil
	}
	unlock, err := lockFile(filepath.Join(dir, ".install.lock"))
	if err != nil {
		return fmt.Errorf("lock the emulator install: %w", err)
	}
	defer unlock()
	if installed() {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("%s is not set, and the emulator is not installed in %s and there is no `npm` to install it.\n%s", EnvEndpoint, dir, howToFix)
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s is not set, and `npm ci` in %s failed: %w\n%s\n%s", EnvEndpoint, dir, err, out, howToFix)
	}
	if !installed() {
		return fmt.Errorf("`npm ci` in %s did not install fauxqs", dir)
	}
	return nil
}

// waitReady calls SQS ListQueues at endpoint until it succeeds or ctx ends.
func waitReady(ctx context.Context, endpoint string) error {
	client := awssqs.New(clientOptions(endpoint), func(o *awssqs.Options) { o.RetryMaxAttempts = 1 })
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := client.ListQueues(cctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)})
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	mu sync.Mutex
	b  strings.Builder
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.b.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func (l *limitedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
