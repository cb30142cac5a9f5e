package cli_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/queue"
)

type outboxPing struct{ N int }

func (*outboxPing) Config() queue.Config                         { return queue.Config{Queue: "pings", Driver: "redis"} }
func (*outboxPing) Handle(ctx context.Context) (struct{}, error) { return struct{}{}, nil }

// `tasq outbox stats` counts what waits; `tasq outbox relay` delivers it to
// Redis and stops on its context; bad --to values are refused with the
// reason.
func TestOutboxCommands(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	prefix := testredis.NewPrefix(t)
	redisURL := withParam(testredis.URL(), "key_prefix", prefix)
	rd, err := redis.NewFromClient(ctx, testredis.NewClient(t), redis.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	client, err := queue.NewClient(e.adapter, queue.WithDriver("redis", rd), queue.WithOutbox(e.adapter))
	if err != nil {
		t.Fatal(err)
	}
	opts := cli.Options{Logger: quietLogger()}
	if r := run(ctx, opts, "outbox", "stats", "--database-url", e.dsn); r.err != nil || !strings.Contains(r.out, "the outbox is empty") {
		t.Fatalf("outbox stats on a fresh database: %v\n%s%s", r.err, r.out, r.errOut)
	}
	tx, err := e.adapter.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := client.DispatchTx(ctx, tx, &outboxPing{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := run(ctx, opts, "outbox", "stats", "--database-url", e.dsn); r.err != nil || !strings.Contains(r.out, "redis") || !strings.Contains(r.out, "ago") {
		t.Fatalf("outbox stats with one pending job: %v\n%s", r.err, r.out)
	}

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan result, 1)
	go func() {
		done <- run(rctx, opts, "outbox", "relay", "--to", "redis="+redisURL, "--poll", "20ms", "--database-url", e.dsn)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := rd.GetJob(ctx, id); err == nil {
			break
		} else if !errors.Is(err, queue.ErrJobNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay did not deliver the job to Redis within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if r := waitDone(t, done, 30*time.Second, "outbox relay"); r.err != nil {
		t.Errorf("outbox relay: %v\n%s", r.err, r.errOut)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"outbox", "relay"}, "needs at least one --to"},
		{[]string{"outbox", "relay", "--to", "redis"}, "want DRIVER=URL"},
		{[]string{"outbox", "relay", "--to", "redis=" + redisURL, "--to", "redis=" + redisURL}, "twice"},
		{[]string{"outbox", "relay", "--to", "x=amqp://127.0.0.1/"}, "unknown scheme"},
	} {
		r := run(ctx, opts, append(c.args, "--database-url", e.dsn)...)
		if r.err == nil || !strings.Contains(r.err.Error(), c.want) {
			t.Errorf("tasq %s: %v, want an error saying %q", strings.Join(c.args, " "), r.err, c.want)
		}
	}
	if r := run(ctx, opts, "outbox", "stats", "--database-url", redisURL); !errors.Is(r.err, errors.ErrUnsupported) {
		t.Errorf("outbox stats on redis: %v, want an unsupported error", r.err)
	}

	// tasq worker --outbox-to runs a relay beside the worker.
	wopts := cli.Options{Logger: quietLogger(), Registry: demoRegistry(t)}
	if r := run(ctx, wopts, "worker", "--outbox-to", "redis", "--database-url", e.dsn); r.err == nil || !strings.Contains(r.err.Error(), "want DRIVER=URL") {
		t.Errorf("worker --outbox-to redis: %v, want an error saying DRIVER=URL", r.err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan result, 1)
	go func() {
		wdone <- run(wctx, wopts, "worker", "--outbox-to", "redis="+redisURL, "--database-url", e.dsn)
	}()
	tx, err = e.adapter.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := client.DispatchTx(ctx, tx, &outboxPing{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := rd.GetJob(ctx, id2); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tasq worker --outbox-to did not deliver the job to Redis within 30s")
		}
	}
	wcancel()
	if r := waitDone(t, wdone, 60*time.Second, "worker --outbox-to"); r.err != nil {
		t.Errorf("worker --outbox-to: %v\n%s", r.err, r.errOut)
	}
}
