package cli_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	_ "github.com/tasqhq/tasq/adapters/mysql" // registers "mysql", as cmd/tasq does
	"github.com/tasqhq/tasq/adapters/postgres"
	_ "github.com/tasqhq/tasq/adapters/redis" // registers "redis"
	_ "github.com/tasqhq/tasq/adapters/sqs"   // registers "sqs"
	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/internal/testmain"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
)

// TestMain runs the tests with real servers of every backend: PostgreSQL,
// Redis, MariaDB and the SQS emulator.
func TestMain(m *testing.M) {
	os.Exit(testmain.Chain(m, testpg.Main, testredis.Main, testmysql.Main, testsqs.Main))
}

// syncBuffer is a bytes.Buffer that workers and tasks may write to concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is what one command run printed and returned.
type result struct {
	out, errOut string
	err         error
}

// run executes the tasq command tree in-process with args.
func run(ctx context.Context, opts cli.Options, args ...string) result {
	return execute(ctx, cli.NewRoot(opts), args...)
}

func execute(ctx context.Context, root interface {
	SetArgs([]string)
	SetOut(io.Writer)
	SetErr(io.Writer)
	ExecuteContext(context.Context) error
}, args ...string) result {
	var out, errOut syncBuffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(ctx)
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// testContext is a context that ends with the test, with task output discarded
// unless -v.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if !testing.Verbose() {
		ctx = demo.WithOutput(ctx, io.Discard)
	}
	return ctx
}

// quietLogger keeps the worker's logs out of the test output unless -v.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// demoRegistry returns a registry with the demo's task types.
func demoRegistry(t *testing.T) *queue.Registry {
	t.Helper()
	reg := queue.NewRegistry()
	if err := demo.Register(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// env is a migrated test database with an adapter and a client on it.
type env struct {
	dsn     string
	adapter *postgres.Adapter
	client  *queue.Client
}

func newEnv(t *testing.T, ctx context.Context) *env {
	t.Helper()
	dsn := testpg.NewDatabase(t)
	a, err := postgres.New(ctx, dsn)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(a.Close)
	c, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	return &env{dsn: dsn, adapter: a, client: c}
}

func (e *env) dispatch(t *testing.T, ctx context.Context, task any, opts ...queue.DispatchOption) uuid.UUID {
	t.Helper()
	id, err := e.client.Dispatch(ctx, task, opts...)
	if err != nil {
		t.Fatalf("dispatch %T: %v", task, err)
	}
	return id
}

// waitState waits until job id is in state st.
func (e *env) waitState(t *testing.T, ctx context.Context, id uuid.UUID, st queue.JobState, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := e.adapter.GetJob(ctx, id)
		if err != nil {
			t.Fatalf("GetJob(%s): %v", id, err)
		}
		if j.State == st {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s after %v; want %s", id, j.State, within, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDone waits for a command started in the background to return.
func waitDone(t *testing.T, done <-chan result, within time.Duration, what string) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(within):
		t.Fatalf("%s did not return within %v", what, within)
		return result{}
	}
}
