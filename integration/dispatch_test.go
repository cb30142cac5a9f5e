package integration

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

func TestDispatchRunsAndStoresResult(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, err := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: "user@example.com", Subject: "Welcome", Body: "Hi"})
	if err != nil {
		t.Fatal(err)
	}
	if id.Version() != 7 {
		t.Errorf("job id %s is UUID version %d, want 7 (time-ordered)", id, id.Version())
	}
	j := e.job(id)
	if j.State != queue.StateAvailable || j.Kind != "SendEmail" || j.Queue != "emails" || j.MaxRetries != 5 ||
		j.RetryDelay != 2*time.Minute || j.Timeout != 30*time.Second {
		t.Fatalf("stored job = %+v; want available SendEmail on emails with the task's config", j)
	}
	var payload map[string]any
	mustJSON(t, j.Payload, &payload)
	if payload["To"] != "user@example.com" || len(payload) != 4 {
		t.Errorf("payload = %v; want the task's exported fields only", payload)
	}

	e.startWorker(registry(t), worker.Config{Queues: []string{"emails"}})
	j = e.waitState(id, queue.StateCompleted, 10*time.Second)
	if string(j.Result) != "true" {
		t.Errorf("result = %s, want true", j.Result)
	}
	if j.FinishedAt == nil || j.Attempt != 1 {
		t.Errorf("finished_at=%v attempt=%d; want set and 1", j.FinishedAt, j.Attempt)
	}
	seen, _ := p.snapshot()
	if len(seen) != 1 || seen[0].ID != id || seen[0].Attempt != 0 || seen[0].DispatchedAt.IsZero() {
		t.Errorf("task saw metadata %+v; want one attempt 0 with ID %s and a dispatch time", seen, id)
	}
}

func TestDispatchOptionsInAnyOrder(t *testing.T) {
	e := newEnv(t)
	orders := [][]queue.DispatchOption{
		{queue.OnQueue("critical"), queue.Delay(time.Hour), queue.RetryAfter(3 * time.Minute)},
		{queue.RetryAfter(3 * time.Minute), queue.Delay(time.Hour), queue.OnQueue("critical")},
	}
	for _, opts := range orders {
		id, err := e.client.Dispatch(e.ctx, &SendEmail{To: "x"}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		j := e.job(id)
		if j.Queue != "critical" || j.State != queue.StateScheduled || j.RetryDelay != 3*time.Minute {
			t.Errorf("job = queue %s state %s retry %v; want critical, scheduled, 3m", j.Queue, j.State, j.RetryDelay)
		}
		if d := time.Until(j.RunAt); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("run_at is %v away, want about an hour", d)
		}
	}
	// The chained form, as in the guide.
	id, err := e.client.Task(&SendEmail{To: "y"}).OnQueue("low").RetryAfter(time.Second).Delay(time.Minute).Dispatch(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if j := e.job(id); j.Queue != "low" || j.State != queue.StateScheduled || j.RetryDelay != time.Second {
		t.Errorf("chained dispatch stored %+v", j)
	}
}

func TestDispatchBadInputIsRejectedAndStoresNothing(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		task any
		opts []queue.DispatchOption
		want error
	}{
		{"zero delay", &SendEmail{}, []queue.DispatchOption{queue.Delay(0)}, queue.ErrInvalidConfig},
		{"negative delay", &SendEmail{}, []queue.DispatchOption{queue.Delay(-time.Second)}, queue.ErrInvalidConfig},
		{"empty queue", &SendEmail{}, []queue.DispatchOption{queue.OnQueue("")}, queue.ErrInvalidConfig},
		{"queue with spaces", &SendEmail{}, []queue.DispatchOption{queue.OnQueue("my queue")}, queue.ErrInvalidConfig},
		{"negative retry delay", &SendEmail{}, []queue.DispatchOption{queue.RetryAfter(-2 * time.Second)}, queue.ErrInvalidConfig},
		{"not a task", struct{ A int }{1}, nil, queue.ErrNotATask},
		{"nil task", (*SendEmail)(nil), nil, queue.ErrNotATask},
		{"untyped nil", nil, nil, queue.ErrNotATask},
		{"bad config", &badConfig{}, nil, queue.ErrInvalidConfig},
		{"unknown driver", &onRedis{}, nil, queue.ErrUnknownDriver},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.client.Dispatch(e.ctx, c.task, c.opts...)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			t.Logf("error message: %v", err)
		})
	}
	if n := e.count("true"); n != 0 {
		t.Errorf("%d jobs stored after rejected dispatches, want 0", n)
	}
	if _, err := e.client.DispatchTx(e.ctx, "not a tx", &SendEmail{}); !errors.Is(err, queue.ErrTxUnsupported) {
		t.Errorf("DispatchTx with a string: err = %v, want ErrTxUnsupported", err)
	}
	if _, err := queue.Dispatch(e.ctx, &SendEmail{}); !errors.Is(err, queue.ErrNoDefaultClient) {
		t.Errorf("package Dispatch without default: err = %v, want ErrNoDefaultClient", err)
	}
}

type badConfig struct{}

func (badConfig) Config() queue.Config { return queue.Config{Timeout: -time.Second} }
func (badConfig) Handle(context.Context) (int, error) {
	return 0, nil
}

type onRedis struct{}

func (onRedis) Config() queue.Config { return queue.Config{Driver: "redis"} }
func (onRedis) Handle(context.Context) (int, error) {
	return 0, nil
}

// The job commits with the caller's transaction or not at all, for each
// supported transaction type.
func TestDispatchTxCommitsWithTheCallersTransaction(t *testing.T) {
	e := newEnv(t)
	key, _ := newProbe(t)
	sqlDB, err := sql.Open("pgx", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	gdb, err := gorm.Open(gormpg.Open(e.dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE orders (id bigserial PRIMARY KEY, note text)`); err != nil {
		t.Fatal(err)
	}

	type txKind struct {
		name     string
		dispatch func(commit bool) uuid.UUID
	}
	kinds := []txKind{
		{"pgx.Tx", func(commit bool) uuid.UUID {
			tx, err := e.pool.Begin(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(e.ctx)
			if _, err := tx.Exec(e.ctx, `INSERT INTO orders (note) VALUES ('pgx')`); err != nil {
				t.Fatal(err)
			}
			id, err := e.client.DispatchTx(e.ctx, tx, &SendEmail{Key: key, To: "pgx@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			if commit {
				if err := tx.Commit(e.ctx); err != nil {
					t.Fatal(err)
				}
			}
			return id
		}},
		{"*sql.Tx", func(commit bool) uuid.UUID {
			tx, err := sqlDB.BeginTx(e.ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(e.ctx, `INSERT INTO orders (note) VALUES ('sql')`); err != nil {
				t.Fatal(err)
			}
			id, err := e.client.DispatchTx(e.ctx, tx, &SendEmail{Key: key, To: "sql@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			if commit {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			return id
		}},
		{"*gorm.DB", func(commit bool) uuid.UUID {
			var id uuid.UUID
			errRollback := errors.New("roll back")
			err := gdb.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec(`INSERT INTO orders (note) VALUES ('gorm')`).Error; err != nil {
					return err
				}
				var err error
				if id, err = e.client.DispatchTx(e.ctx, tx, &SendEmail{Key: key, To: "gorm@example.com"}); err != nil {
					return err
				}
				if !commit {
					return errRollback
				}
				return nil
			})
			if err != nil && !errors.Is(err, errRollback) {
				t.Fatal(err)
			}
			return id
		}},
	}
	var committed []uuid.UUID
	for _, k := range kinds {
		rolledBack := k.dispatch(false)
		if _, err := e.adapter.GetJob(e.ctx, rolledBack); !errors.Is(err, queue.ErrJobNotFound) {
			t.Errorf("%s: rolled-back job: GetJob err = %v, want ErrJobNotFound", k.name, err)
		}
		committed = append(committed, k.dispatch(true))
	}
	if n := e.count("true"); n != len(kinds) {
		t.Errorf("%d jobs stored, want %d (only the committed ones)", n, len(kinds))
	}
	var orders int
	_ = e.pool.QueryRow(e.ctx, `SELECT count(*) FROM orders`).Scan(&orders)
	if orders != len(kinds) {
		t.Errorf("%d orders stored, want %d", orders, len(kinds))
	}
	// Committed jobs run, woken by the NOTIFY that committed with them.
	e.startWorker(registry(t), worker.Config{Queues: []string{"emails"}, PollInterval: time.Hour})
	for _, id := range committed {
		e.waitState(id, queue.StateCompleted, 10*time.Second)
	}
}

func TestDispatchManyInOneRoundTrip(t *testing.T) {
	e := newEnv(t)
	tasks := make([]any, 0, 500)
	for i := range 500 {
		tasks = append(tasks, &SendEmail{To: "bulk", Subject: string(rune('a' + i%26))})
	}
	ids, err := e.client.DispatchMany(e.ctx, tasks, queue.OnQueue("bulk"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(tasks) {
		t.Fatalf("got %d ids for %d tasks", len(ids), len(tasks))
	}
	if n := e.count("queue = 'bulk' AND state = 'available'"); n != 500 {
		t.Errorf("%d bulk jobs available, want 500", n)
	}
	j := e.job(ids[27])
	var p SendEmail
	mustJSON(t, j.Payload, &p)
	if p.Subject != "b" {
		t.Errorf("ids[27] payload subject %q, want b: ids are not in task order", p.Subject)
	}
	// All or nothing: one bad task stores none.
	_, err = e.client.DispatchMany(e.ctx, []any{&SendEmail{}, &badConfig{}})
	if !errors.Is(err, queue.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	if n := e.count("true"); n != 500 {
		t.Errorf("%d jobs after a rejected batch, want 500", n)
	}
}

func TestDefaultClient(t *testing.T) {
	e := newEnv(t)
	queue.SetDefault(e.client)
	t.Cleanup(func() { queue.SetDefault(nil) })
	id, err := queue.Dispatch(e.ctx, &SendEmail{To: "global"})
	if err != nil {
		t.Fatal(err)
	}
	id2, err := queue.New(&SendEmail{To: "chained"}).OnQueue("other").Dispatch(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e.job(id).Queue != "emails" || e.job(id2).Queue != "other" {
		t.Errorf("default client stored jobs on the wrong queues")
	}
}

func TestFunctionTask(t *testing.T) {
	e := newEnv(t)
	type resizeArgs struct {
		Path  string
		Width int
	}
	resize := queue.NewFunc("resize_image", queue.Config{Queue: "images"},
		func(ctx context.Context, a resizeArgs) (string, error) {
			m, _ := queue.MetadataFromContext(ctx)
			if m.ID == uuid.Nil {
				return "", errors.New("no metadata in context")
			}
			return a.Path + "@" + time.Duration(a.Width).String(), nil
		})
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, resize); err != nil {
		t.Fatal(err)
	}
	if err := queue.RegisterFunc(reg, resize); !errors.Is(err, queue.ErrDuplicateKind) {
		t.Errorf("second RegisterFunc: err = %v, want ErrDuplicateKind", err)
	}
	id, err := e.client.Dispatch(e.ctx, resize.With(resizeArgs{Path: "a.png", Width: 3}))
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(reg, worker.Config{Queues: []string{"images"}})
	j := e.waitState(id, queue.StateCompleted, 10*time.Second)
	if string(j.Result) != `"a.png@3ns"` || j.Kind != "resize_image" {
		t.Errorf("kind %s result %s", j.Kind, j.Result)
	}
}
