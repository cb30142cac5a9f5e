package integration

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/mysql"
	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/adapters/sqs"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// ranOn records which backend's worker ran which task.
var ranOn sync.Map // key -> backend name

// The guide's "multiple drivers in the same application": each task names
// its driver; the client routes it; one worker per backend runs it.
type RedisTask struct{ Key string }

func (*RedisTask) Config() queue.Config { return queue.Config{Queue: "redis-queue", Driver: "redis"} }
func (t *RedisTask) Handle(ctx context.Context) (string, error) {
	return record(ctx, t.Key)
}

type PostgresTask struct{ Key string }

func (*PostgresTask) Config() queue.Config {
	return queue.Config{Queue: "postgres-queue", Driver: "postgres"}
}
func (t *PostgresTask) Handle(ctx context.Context) (string, error) { return record(ctx, t.Key) }

type SQSTask struct{ Key string }

func (*SQSTask) Config() queue.Config { return queue.Config{Queue: "sqs-queue", Driver: "sqs"} }
func (t *SQSTask) Handle(ctx context.Context) (string, error) {
	return record(ctx, t.Key)
}

type MySQLTask struct{ Key string }

func (*MySQLTask) Config() queue.Config { return queue.Config{Queue: "mysql-queue", Driver: "mysql"} }
func (t *MySQLTask) Handle(ctx context.Context) (string, error) {
	return record(ctx, t.Key)
}

// DefaultTask names no driver: the client's default (Postgres) stores it.
type DefaultTask struct{ Key string }

func (*DefaultTask) Config() queue.Config { return queue.Config{Queue: "default-queue"} }
func (t *DefaultTask) Handle(ctx context.Context) (string, error) {
	return record(ctx, t.Key)
}

// InstanceTask carries its driver as an instance (the guide's custom driver
// instance); the field is unexported, so it does not travel.
type InstanceTask struct {
	Key     string
	adapter queue.Adapter
}

func (t *InstanceTask) Config() queue.Config {
	return queue.Config{Queue: "instance-queue", Adapter: t.adapter}
}
func (t *InstanceTask) Handle(ctx context.Context) (string, error) { return record(ctx, t.Key) }

type backendKey struct{}

func record(ctx context.Context, key string) (string, error) {
	backend, _ := ctx.Value(backendKey{}).(string)
	ranOn.Store(key, backend)
	return backend, nil
}

func TestMultipleDriversInOneApplication(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	rd, err := redis.NewFromClient(ctx, testredis.NewClient(t), redis.Options{Prefix: testredis.NewPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	sq, err := sqs.NewFromClient(ctx, testsqs.Client(t), sqs.Options{Prefix: testsqs.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	my, err := mysql.New(ctx, testmysql.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close(); sq.Close(); my.Close() })
	// A second Redis adapter (another prefix), used only as an instance.
	custom, err := redis.NewFromClient(ctx, testredis.NewClient(t), redis.Options{Prefix: testredis.NewPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	client, err := queue.NewClient(e.adapter, queue.WithDriver("redis", rd), queue.WithDriver("sqs", sq), queue.WithDriver("mysql", my))
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]string{}
	dispatch := func(task any, key, backend string) uuid.UUID {
		t.Helper()
		id, err := client.Dispatch(ctx, task)
		if err != nil {
			t.Fatalf("dispatch %T: %v", task, err)
		}
		want[key] = backend
		return id
	}
	pgID := dispatch(&PostgresTask{Key: "pg"}, "pg", "postgres")
	defID := dispatch(&DefaultTask{Key: "default"}, "default", "postgres")
	redisID := dispatch(&RedisTask{Key: "redis"}, "redis", "redis")
	mysqlID := dispatch(&MySQLTask{Key: "mysql"}, "mysql", "mysql")
	dispatch(&SQSTask{Key: "sqs"}, "sqs", "sqs")
	instID := dispatch(&InstanceTask{Key: "instance", adapter: custom}, "instance", "custom")

	// Each job is stored by its own backend and nowhere else.
	for _, c := range []struct {
		a  queue.Adapter
		id uuid.UUID
	}{{e.adapter, pgID}, {e.adapter, defID}, {rd, redisID}, {my, mysqlID}, {custom, instID}} {
		jr, ok := c.a.(queue.JobReader)
		if !ok {
			t.Errorf("the %s adapter is no queue.JobReader", c.a.Name())
			continue
		}
		if _, err := jr.GetJob(ctx, c.id); err != nil {
			t.Errorf("job %s not in %s: %v", c.id, c.a.Name(), err)
		}
	}
	if _, err := rd.GetJob(ctx, instID); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("the instance task leaked into the named redis adapter: %v", err)
	}
	if _, err := e.adapter.GetJob(ctx, redisID); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("the redis task was stored in postgres too: %v", err)
	}

	reg := queue.NewRegistry()
	for _, err := range []error{queue.Register(reg, &PostgresTask{}), queue.Register(reg, &DefaultTask{}), queue.Register(reg, &RedisTask{}),
		queue.Register(reg, &SQSTask{}), queue.Register(reg, &MySQLTask{}), queue.Register(reg, &InstanceTask{})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range map[string]struct {
		src    queue.Adapter
		queues []string
	}{
		"postgres": {e.adapter, []string{"postgres-queue", "default-queue"}},
		"redis":    {rd, []string{"redis-queue"}},
		"sqs":      {sq, []string{"sqs-queue"}},
		"mysql":    {my, []string{"mysql-queue"}},
		"custom":   {custom, []string{"instance-queue"}},
	} {
		w, err := worker.New(b.src, reg, worker.Config{Queues: b.queues, PollInterval: 100 * time.Millisecond,
			MaintenanceInterval: 100 * time.Millisecond, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(context.WithValue(ctx, backendKey{}, name))
		done := make(chan struct{})
		go func() { _ = w.Run(wctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	waitFor(t, 30*time.Second, "every task to run on its backend", func() bool {
		for key := range want {
			if _, ok := ranOn.Load(key); !ok {
				return false
			}
		}
		return true
	})
	for key, backend := range want {
		if got, _ := ranOn.Load(key); got != backend {
			t.Errorf("task %s ran on %v, want %s", key, got, backend)
		}
	}
	e.waitState(pgID, queue.StateCompleted, 10*time.Second)

	// Asking a backend for what it cannot do is an error, never a silent success.
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, task := range []any{&RedisTask{}, &SQSTask{}} {
		if _, err := client.DispatchTx(ctx, tx, task); !errors.Is(err, queue.ErrTxUnsupported) {
			t.Errorf("DispatchTx(%T) in a pgx.Tx = %v, want ErrTxUnsupported", task, err)
		}
	}
	if _, err := client.DispatchTx(ctx, tx, &MySQLTask{}); !errors.Is(err, queue.ErrTxUnsupported) {
		t.Errorf("DispatchTx(MySQLTask) in a pgx.Tx = %v, want ErrTxUnsupported", err)
	}
	if _, err := client.DispatchManyTx(ctx, tx, []any{&PostgresTask{}, &RedisTask{}}); !errors.Is(err, queue.ErrTxUnsupported) {
		t.Errorf("one transaction across two drivers = %v, want ErrTxUnsupported", err)
	}
	// What a backend cannot do, its adapter does not offer: SQS cannot find
	// or change a job by ID, and neither Redis nor SQS can store jobs in a
	// caller's transaction. The capabilities it has are there.
	for _, c := range []struct {
		a    queue.Adapter
		cap  string
		want bool
		has  bool
	}{
		{sq, "queue.JobReader", false, is[queue.JobReader](sq)},
		{sq, "queue.JobEditor", false, is[queue.JobEditor](sq)},
		{sq, "queue.TxInserter", false, is[queue.TxInserter](sq)},
		{sq, "queue.StatsReader", true, is[queue.StatsReader](sq)},
		{rd, "queue.TxInserter", false, is[queue.TxInserter](rd)},
		{rd, "queue.JobEditor", true, is[queue.JobEditor](rd)},
		{my, "queue.TxInserter", true, is[queue.TxInserter](my)},
		{e.adapter, "queue.TxInserter", true, is[queue.TxInserter](e.adapter)},
		{e.adapter, "queue.Notifier", true, is[queue.Notifier](e.adapter)},
	} {
		if c.has != c.want {
			t.Errorf("the %s adapter is a %s: %v; want %v", c.a.Name(), c.cap, c.has, c.want)
		}
	}
}

// is reports whether a has the capability C.
func is[C any](a queue.Adapter) bool {
	_, ok := a.(C)
	return ok
}
