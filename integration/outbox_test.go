package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/adapters/sqs"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// OutboxMail is a task bound for Redis, dispatched in PostgreSQL
// transactions through the outbox.
type OutboxMail struct{ To string }

func (*OutboxMail) Config() queue.Config                         { return queue.Config{Queue: "outbox-mail", Driver: "redis"} }
func (*OutboxMail) Handle(ctx context.Context) (struct{}, error) { return struct{}{}, nil }

// OutboxSMS is a task bound for SQS, recorded when it runs.
type OutboxSMS struct{ To string }

func (*OutboxSMS) Config() queue.Config { return queue.Config{Queue: "outbox-sms", Driver: "sqs"} }
func (t *OutboxSMS) Handle(ctx context.Context) (struct{}, error) {
	smsSent.Store(t.To, true)
	return struct{}{}, nil
}

var smsSent sync.Map

type outboxEnv struct {
	*env
	rd     *redis.Adapter
	client *queue.Client
}

func newOutboxEnv(t *testing.T) outboxEnv {
	t.Helper()
	e := newEnv(t)
	rd, err := redis.NewFromClient(e.ctx, testredis.NewClient(t), redis.Options{Prefix: testredis.NewPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rd.Close)
	c, err := queue.NewClient(e.adapter, queue.WithDriver("redis", rd), queue.WithOutbox(e.adapter))
	if err != nil {
		t.Fatal(err)
	}
	return outboxEnv{env: e, rd: rd, client: c}
}

// dispatchTx dispatches task in a PostgreSQL transaction and commits it or
// rolls it back.
func (e outboxEnv) dispatchTx(task any, commit bool) uuid.UUID {
	e.t.Helper()
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	id, err := e.client.DispatchTx(e.ctx, tx, task)
	if err != nil {
		e.t.Fatalf("DispatchTx: %v", err)
	}
	if commit {
		if err := tx.Commit(e.ctx); err != nil {
			e.t.Fatal(err)
		}
	}
	return id
}

func (e outboxEnv) outboxRows() int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM tasq_outbox`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e outboxEnv) inRedis(id uuid.UUID) bool {
	e.t.Helper()
	_, err := e.rd.GetJob(e.ctx, id)
	if err != nil && !errors.Is(err, queue.ErrJobNotFound) {
		e.t.Fatal(err)
	}
	return err == nil
}

// A Redis job dispatched in a PostgreSQL transaction reaches Redis after
// the commit, through the relay, with its ID; rolled back, it never does.
func TestOutboxDeliversWhatCommitsOnly(t *testing.T) {
	t.Parallel()
	e := newOutboxEnv(t)
	kept := e.dispatchTx(&OutboxMail{To: "a@example.com"}, true)
	gone := e.dispatchTx(&OutboxMail{To: "b@example.com"}, false)
	if e.inRedis(kept) {
		t.Fatal("the job is in Redis before any relay ran")
	}
	relay, err := e.adapter.NewRelay(map[string]queue.Inserter{"redis": e.rd}, postgres.RelayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := relay.RelayOnce(e.ctx)
	if err != nil || n != 1 {
		t.Fatalf("RelayOnce = %d, %v; want 1 delivered", n, err)
	}
	if !e.inRedis(kept) || e.inRedis(gone) {
		t.Errorf("in Redis: committed %v (want true), rolled back %v (want false)", e.inRedis(kept), e.inRedis(gone))
	}
	j, err := e.rd.GetJob(e.ctx, kept)
	if err != nil || j.Queue != "outbox-mail" {
		t.Errorf("delivered job %+v (%v)", j, err)
	}
	if rows := e.outboxRows(); rows != 0 {
		t.Errorf("outbox rows after delivery = %d, want 0", rows)
	}
	// A redis worker runs it.
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &OutboxMail{})
	w, err := worker.New(e.rd, reg, worker.Config{Queues: []string{"outbox-mail"}, Logger: quietLogger(), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, 30*time.Second, "the relayed job to complete in Redis", func() bool {
		j, err := e.rd.GetJob(e.ctx, kept)
		return err == nil && j.State == queue.StateCompleted
	})
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// ambiguous is a target whose inserts reach Redis but whose answers are
// lost, as when a relay dies between Redis's reply and its commit.
type ambiguous struct {
	inner queue.Inserter
	lose  bool
}

func (a *ambiguous) Insert(ctx context.Context, jobs []queue.NewJob) error {
	if err := a.inner.Insert(ctx, jobs); err != nil {
		return err
	}
	if a.lose {
		return errors.New("connection reset after the insert was sent")
	}
	return nil
}

// A delivery whose outcome the relay never learned is tried again; Redis
// says the job exists, which counts as delivered: one job, not two. A job
// the target refuses for good stays in the outbox, failed, with the reason,
// and does not hold back the others.
func TestOutboxRedeliveryIsDeduplicated(t *testing.T) {
	t.Parallel()
	e := newOutboxEnv(t)
	ids := []uuid.UUID{e.dispatchTx(&OutboxMail{To: "1"}, true), e.dispatchTx(&OutboxMail{To: "2"}, true)}
	target := &ambiguous{inner: e.rd, lose: true}
	relay, err := e.adapter.NewRelay(map[string]queue.Inserter{"redis": target}, postgres.RelayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := relay.RelayOnce(e.ctx); err != nil || n != 0 {
		t.Fatalf("first round = %d, %v; want 0 delivered as far as the relay knows", n, err)
	}
	var attempts int
	var lastErr string
	if err := e.pool.QueryRow(e.ctx, `SELECT min(attempts), min(last_error) FROM tasq_outbox`).Scan(&attempts, &lastErr); err != nil || attempts != 1 {
		t.Fatalf("outbox after the lost answer: attempts %d, error %q (%v)", attempts, lastErr, err)
	}
	// The backoff passes; the answers get through now.
	target.lose = false
	if _, err := e.pool.Exec(e.ctx, `UPDATE tasq_outbox SET next_try_at = now()`); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.RelayOnce(e.ctx); err != nil || n != 2 {
		t.Fatalf("second round = %d, %v; want 2 (both found in Redis already)", n, err)
	}
	if rows := e.outboxRows(); rows != 0 {
		t.Errorf("outbox rows = %d, want 0", rows)
	}
	jobs, err := e.rd.ListJobs(e.ctx, queue.ListFilter{Queue: "outbox-mail"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || !((jobs[0].ID == ids[0] && jobs[1].ID == ids[1]) || (jobs[0].ID == ids[1] && jobs[1].ID == ids[0])) {
		t.Errorf("Redis holds %d jobs, want exactly the 2 dispatched", len(jobs))
	}

	// A poison job (the target refuses it for good) and a good one.
	poison := e.dispatchTx(&OutboxMail{To: "poison"}, true)
	good := e.dispatchTx(&OutboxMail{To: "good"}, true)
	relay2, err := e.adapter.NewRelay(map[string]queue.Inserter{"redis": refusing{e.rd, poison}}, postgres.RelayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := relay2.RelayOnce(e.ctx); err != nil || n != 1 {
		t.Fatalf("round with a poison job = %d, %v; want the good one delivered", n, err)
	}
	if !e.inRedis(good) || e.inRedis(poison) {
		t.Errorf("good in Redis %v, poison in Redis %v", e.inRedis(good), e.inRedis(poison))
	}
	stats, err := e.adapter.OutboxStats(e.ctx)
	if err != nil || len(stats) != 1 || stats[0].Failed != 1 || stats[0].Pending != 0 {
		t.Errorf("OutboxStats = %+v (%v), want redis: 1 failed, 0 pending", stats, err)
	}
	if n, err := relay2.RelayOnce(e.ctx); err != nil || n != 0 {
		t.Errorf("a failed row was taken again: %d, %v", n, err)
	}
}

// refusing refuses one job as a bad job.
type refusing struct {
	inner queue.Inserter
	bad   uuid.UUID
}

func (r refusing) Insert(ctx context.Context, jobs []queue.NewJob) error {
	for _, j := range jobs {
		if j.ID == r.bad {
			return fmt.Errorf("%w: job %s is not for this backend", queue.ErrInvalidPayload, j.ID)
		}
	}
	return r.inner.Insert(ctx, jobs)
}

// An SQS job goes the same way: committed, relayed, run by an SQS worker.
// What SQS cannot store (tags) is refused at dispatch, inside the
// transaction, not by the relay after the commit.
func TestOutboxToSQS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sq, err := sqs.NewFromClient(e.ctx, testsqs.Client(t), sqs.Options{Prefix: testsqs.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sq.Close)
	client, err := queue.NewClient(e.adapter, queue.WithDriver("sqs", sq), queue.WithOutbox(e.adapter))
	if err != nil {
		t.Fatal(err)
	}
	to := uuid.NewString()
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	if _, err := client.DispatchTx(e.ctx, tx, &OutboxSMS{To: to}, queue.WithTags("x")); !errors.Is(err, queue.ErrTagsUnsupported) {
		t.Errorf("tags on an SQS job through the outbox: %v, want ErrTagsUnsupported", err)
	}
	if _, err := client.DispatchTx(e.ctx, tx, &OutboxSMS{To: to}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	relay, err := e.adapter.NewRelay(map[string]queue.Inserter{"sqs": sq}, postgres.RelayOptions{Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &OutboxSMS{})
	w, err := worker.New(sq, reg, worker.Config{Queues: []string{"outbox-sms"}, Logger: quietLogger(), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go func() { _ = relay.Run(ctx) }()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, 60*time.Second, "the relayed SMS job to run on SQS", func() bool {
		_, ok := smsSent.Load(to)
		return ok
	})
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// A running relay hears the commit (LISTEN/NOTIFY on the outbox channel):
// with an hour-long poll, the job still reaches Redis at once.
func TestOutboxRelayWakesOnCommit(t *testing.T) {
	t.Parallel()
	e := newOutboxEnv(t)
	relay, err := e.adapter.NewRelay(map[string]queue.Inserter{"redis": e.rd}, postgres.RelayOptions{Poll: time.Hour, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Run's first round finds nothing; then it waits for a notification.
	waitFor(t, 10*time.Second, "the relay to listen", func() bool {
		var n int
		_ = e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'listen%tasq_send%'`).Scan(&n)
		return n > 0
	})
	id := e.dispatchTx(&OutboxMail{To: "woken"}, true)
	waitFor(t, 10*time.Second, "the job to reach Redis without a poll", func() bool { return e.inRedis(id) })
}

// The relay child: the environment variables that make this test binary a
// relay process (relayChildMain) instead of running tests.
const (
	relayChildEnv   = "TASQ_TEST_CHILD_RELAY" // the PostgreSQL DSN
	relayRedisEnv   = "TASQ_TEST_CHILD_RELAY_REDIS"
	relayPrefixEnv  = "TASQ_TEST_CHILD_RELAY_PREFIX"
	relayChildBatch = 10
)

// relayChildMain relays from the outbox at $TASQ_TEST_CHILD_RELAY to the
// Redis at $TASQ_TEST_CHILD_RELAY_REDIS (key prefix ..._PREFIX) in small
// rounds, until it is killed.
func relayChildMain() int {
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "relay child:", err); return 2 }
	pg, err := postgres.New(ctx, os.Getenv(relayChildEnv))
	if err != nil {
		return fail(err)
	}
	opt, err := goredis.ParseURL(os.Getenv(relayRedisEnv))
	if err != nil {
		return fail(err)
	}
	rd, err := redis.NewFromClient(ctx, goredis.NewClient(opt), redis.Options{Prefix: os.Getenv(relayPrefixEnv)})
	if err != nil {
		return fail(err)
	}
	relay, err := pg.NewRelay(map[string]queue.Inserter{"redis": rd}, postgres.RelayOptions{Batch: relayChildBatch, Poll: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return fail(err)
	}
	return map[bool]int{true: 0, false: 2}[relay.Run(ctx) == nil]
}

// Relays SIGKILLed at random points lose nothing and double nothing: 3,000
// committed jobs, relayed in rounds of 10 by relay processes each killed
// 0-40 ms after it first delivered (some between Redis's answer and their
// commit), all reach Redis, each once, and the outbox ends empty.
func TestOutboxRelayKilledLosesNothing(t *testing.T) {
	t.Parallel()
	e := newOutboxEnv(t)
	const n = 3000
	tasks := make([]any, 0, 500)
	for i := 0; i < n; i += 500 {
		tasks = tasks[:0]
		for k := range 500 {
			tasks = append(tasks, &OutboxMail{To: fmt.Sprint(i + k)})
		}
		tx, err := e.pool.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.DispatchManyTx(e.ctx, tx, tasks); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	kills := 0
	deadline := time.Now().Add(3 * time.Minute)
	for e.outboxRows() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d outbox rows left after 3 minutes of relays", e.outboxRows())
		}
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), relayChildEnv+"="+e.dsn, relayRedisEnv+"="+testredis.URL(), relayPrefixEnv+"="+e.rd.Prefix())
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it mid-work: once it has delivered something (a loaded
		// machine may take a while to start it), after 0-40 ms more.
		before := e.outboxRows()
		for wait := time.Now().Add(20 * time.Second); e.outboxRows() == before && before > 0 && time.Now().Before(wait); {
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		_ = child.Process.Signal(syscall.SIGKILL)
		_ = child.Wait()
		kills++
		// A round a kill interrupted is retried with backoff (1 s): let the
		// next relay take those rows now.
		if _, err := e.pool.Exec(e.ctx, `UPDATE tasq_outbox SET next_try_at = now()`); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := e.rd.Stats(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var available int64
	for _, s := range stats {
		if s.Queue == "outbox-mail" && s.State == queue.StateAvailable {
			available = s.Count
		}
	}
	t.Logf("relayed %d jobs through %d killed relay processes", n, kills)
	if available != n {
		t.Errorf("Redis holds %d jobs, want exactly %d (none lost, none doubled)", available, n)
	}
	if kills < 2 {
		t.Logf("note: only %d relay processes were needed; the kills may have missed every round", kills)
	}
}
