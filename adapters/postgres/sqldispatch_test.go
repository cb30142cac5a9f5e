package postgres_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Tests of migration 3: tasq_dispatch(), the SQL way to enqueue a job, and
// tasq_uuidv7(), the default of tasq_jobs.id.

// sqlDispatchTask is the task a worker runs for a job enqueued from SQL.
type sqlDispatchTask struct {
	N int `json:"n"`
}

func (*sqlDispatchTask) Kind() string { return "okTask" }

// Handle returns twice N, so the result shows the payload arrived.
func (t *sqlDispatchTask) Handle(context.Context) (int, error) { return 2 * t.N, nil }

// claimCounter is the adapter with its claims counted. It holds Subscribe
// back until the first claim has returned, which orders a worker's start:
// claim 1 (the look at start), then LISTEN and the wake-up that follows it,
// then claim 2. Once claim 2 has returned the worker is idle, and with an
// hour's poll interval only a notification can make it claim again.
type claimCounter struct {
	*postgres.Adapter
	claims     atomic.Int64
	firstClaim chan struct{} // closed when the first Claim returns
	once       sync.Once
}

func (c *claimCounter) Claim(ctx context.Context, req queue.ClaimRequest) ([]*queue.Job, error) {
	jobs, err := c.Adapter.Claim(ctx, req)
	c.claims.Add(1)
	c.once.Do(func() { close(c.firstClaim) })
	return jobs, err
}

func (c *claimCounter) Subscribe(ctx context.Context) (<-chan string, error) {
	select {
	case <-c.firstClaim:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c.Adapter.Subscribe(ctx)
}

// sqlWaitFor polls cond until it holds, failing the test after within.
func sqlWaitFor(t *testing.T, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sqlListener returns a connection LISTENing on the channel workers wake on.
func sqlListener(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+postgres.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	return conn
}

// expectNotifications reads notifications from l and checks that their
// payloads are want, in order.
func expectNotifications(t *testing.T, l *pgx.Conn, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) < len(want) {
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("notifications %q so far, want %q: %v", got, want, err)
		}
		if n.Channel != postgres.NotifyChannel {
			t.Fatalf("notification on channel %q, want %q", n.Channel, postgres.NotifyChannel)
		}
		got = append(got, n.Payload)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("notifications %q, want %q", got, want)
	}
}

// notifyMarker sends a notification that commits at once, to order what a
// listener receives: anything a test's transaction notifies too early
// arrives before the marker.
func notifyMarker(t *testing.T, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, marker string) {
	t.Helper()
	if _, err := db.Exec(context.Background(), "SELECT pg_notify($1, $2)", postgres.NotifyChannel, marker); err != nil {
		t.Fatal(err)
	}
}

func sqlQuietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// A job enqueued with a plain SELECT, as from psql, is run by a worker that
// nothing but the function's NOTIFY can wake.
func TestSQLDispatchWakesAWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	src := &claimCounter{Adapter: a, firstClaim: make(chan struct{})}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &sqlDispatchTask{})
	w, err := worker.New(src, reg, worker.Config{
		PollInterval: time.Hour, MaintenanceInterval: time.Hour, Logger: sqlQuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
	// Claim 1 is the look at start, claim 2 follows LISTEN: then the worker is idle.
	sqlWaitFor(t, 10*time.Second, "the worker to listen and go idle", func() (bool, error) {
		return src.claims.Load() >= 2, nil
	})

	var id uuid.UUID
	if err := a.Pool().QueryRow(ctx, `SELECT tasq_dispatch('okTask', '{"n":2}')`, pgx.QueryExecModeSimpleProtocol).Scan(&id); err != nil {
		t.Fatalf("tasq_dispatch: %v", err)
	}
	if id.Version() != 7 {
		t.Errorf("job ID %s is version %d, want 7", id, id.Version())
	}
	var j *queue.JobInfo
	sqlWaitFor(t, 10*time.Second, "the job to complete", func() (bool, error) {
		j, err = a.GetJob(ctx, id)
		return err == nil && j.State == queue.StateCompleted, err
	})
	if string(j.Result) != "4" {
		t.Errorf("result %s, want 4 (the worker saw n=2)", j.Result)
	}
	if j.Kind != "okTask" || j.Queue != queue.DefaultQueue || j.Attempt != 1 || j.AttemptedBy != w.ID() {
		t.Errorf("job %+v, want kind okTask on queue default, run once by %s", j, w.ID())
	}
	if n := src.claims.Load(); n != 3 {
		t.Logf("claims: %d (expected 3: at start, after LISTEN, after the notification)", n)
	}
}

// A trigger enqueues a job with the row that fires it: a rolled-back insert
// leaves no job and wakes nobody, a committed one leaves one job and wakes
// the workers on commit, not before.
func TestSQLDispatchFromATrigger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, dsn := newAdapter(t)
	pool := a.Pool()
	if _, err := pool.Exec(ctx, `
CREATE TABLE signups (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL
);
CREATE FUNCTION signups_send_welcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasq_dispatch('SendWelcome', jsonb_build_object('user_id', NEW.id), 'emails');
    RETURN NULL;
END
$$;
CREATE TRIGGER signups_send_welcome AFTER INSERT ON signups
    FOR EACH ROW EXECUTE FUNCTION signups_send_welcome();`); err != nil {
		t.Fatal(err)
	}
	l := sqlListener(t, dsn)
	count := func() (signups, jobs int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM signups), (SELECT count(*) FROM tasq_jobs)`).Scan(&signups, &jobs); err != nil {
			t.Fatal(err)
		}
		return signups, jobs
	}

	// Rolled back: no job, no wake-up.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO signups (email) VALUES ('gone@example.com')`); err != nil {
		t.Fatal(err)
	}
	var inTx int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&inTx); err != nil || inTx != 1 {
		t.Fatalf("inside the transaction the trigger's job is %d rows (%v), want 1", inTx, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if s, j := count(); s != 0 || j != 0 {
		t.Fatalf("after rollback: %d signups, %d jobs; want none", s, j)
	}
	notifyMarker(t, pool, "marker-after-rollback")

	// Committed: one job, and the wake-up arrives only at the commit.
	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var userID int64
	if err := tx.QueryRow(ctx, `INSERT INTO signups (email) VALUES ('kept@example.com') RETURNING id`).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	if _, j := count(); j != 0 {
		t.Fatalf("another session sees %d jobs before the commit, want 0", j)
	}
	notifyMarker(t, pool, "marker-before-commit")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	expectNotifications(t, l, "marker-after-rollback", "marker-before-commit", "emails")

	if s, j := count(); s != 1 || j != 1 {
		t.Fatalf("after commit: %d signups, %d jobs; want 1 and 1", s, j)
	}
	var (
		kind, q, state string
		payload        map[string]any
	)
	if err := pool.QueryRow(ctx, `SELECT kind, queue, state::text, payload FROM tasq_jobs`).Scan(&kind, &q, &state, &payload); err != nil {
		t.Fatal(err)
	}
	if kind != "SendWelcome" || q != "emails" || state != "available" {
		t.Errorf("job kind %q queue %q state %s, want SendWelcome on emails, available", kind, q, state)
	}
	if len(payload) != 1 || payload["user_id"] != float64(userID) {
		t.Errorf("payload %v, want {\"user_id\": %d}", payload, userID)
	}
}

// Every argument lands in its column as the Go client would store it: a
// future run_at schedules the job (and wakes nobody), a past one is "now",
// durations become milliseconds, an explicit ID is kept and the defaults
// match the Go client's.
func TestSQLDispatchStoresWhatGoWould(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, dsn := newAdapter(t)
	pool := a.Pool()
	l := sqlListener(t, dsn)

	explicit := uuid.New()
	var got uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT tasq_dispatch('Later', '{"a":1}', 'reports', now() + interval '1 hour', 7, 5,
		interval '90 seconds', interval '2.5 seconds', $1)`, explicit).Scan(&got); err != nil {
		t.Fatalf("tasq_dispatch: %v", err)
	}
	if got != explicit {
		t.Fatalf("tasq_dispatch returned %s, want the explicit id %s", got, explicit)
	}
	notifyMarker(t, pool, "marker")
	expectNotifications(t, l, "marker") // a scheduled job wakes nobody

	j, err := a.GetJob(ctx, explicit)
	if err != nil {
		t.Fatal(err)
	}
	if j.Kind != "Later" || j.Queue != "reports" || j.State != queue.StateScheduled || j.Priority != 7 ||
		j.MaxRetries != 5 || j.RetryDelay != 90*time.Second || j.Timeout != 2500*time.Millisecond || string(j.Payload) != `{"a": 1}` {
		t.Errorf("delayed job %+v", j)
	}
	var delay time.Duration
	var retryMS, timeoutMS int64
	if err := pool.QueryRow(ctx, `SELECT run_at - dispatched_at, retry_delay_ms, timeout_ms FROM tasq_jobs WHERE id = $1`, explicit).
		Scan(&delay, &retryMS, &timeoutMS); err != nil {
		t.Fatal(err)
	}
	if delay != time.Hour || retryMS != 90000 || timeoutMS != 2500 {
		t.Errorf("run_at - dispatched_at %v, retry_delay_ms %d, timeout_ms %d; want 1h, 90000, 2500", delay, retryMS, timeoutMS)
	}

	// Named arguments; a run_at in the past means now, like a Go job without Delay.
	var past uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT tasq_dispatch('Now', run_at => now() - interval '1 day', priority => -3,
		max_retries => 0, retry_delay => '0', timeout => '0.5 ms')`).Scan(&past); err != nil {
		t.Fatalf("tasq_dispatch with named arguments: %v", err)
	}
	expectNotifications(t, l, queue.DefaultQueue)
	var runAtIsNow bool
	if err := pool.QueryRow(ctx, `SELECT run_at = dispatched_at, retry_delay_ms, timeout_ms FROM tasq_jobs WHERE id = $1`, past).
		Scan(&runAtIsNow, &retryMS, &timeoutMS); err != nil {
		t.Fatal(err)
	}
	if j, err := a.GetJob(ctx, past); err != nil || j.State != queue.StateAvailable || j.Priority != -3 || j.MaxRetries != 0 {
		t.Errorf("job with a past run_at: %+v, %v; want available, priority -3, no retries", j, err)
	}
	if !runAtIsNow || retryMS != 0 || timeoutMS != 1 {
		t.Errorf("run_at = dispatched_at %v, retry_delay_ms %d, timeout_ms %d; want true, 0, 1 (a positive timeout never rounds to none)",
			runAtIsNow, retryMS, timeoutMS)
	}

	// The defaults are the Go client's: compare with a job the adapter inserts.
	goID := uuid.Must(uuid.NewV7())
	if err := a.Insert(ctx, []queue.NewJob{{ID: goID, Kind: "Same", Queue: queue.DefaultQueue, Payload: []byte(`{}`),
		MaxRetries: queue.DefaultMaxRetries, RetryDelay: queue.DefaultRetryDelay}}); err != nil {
		t.Fatal(err)
	}
	var sqlID uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT tasq_dispatch('Same')`).Scan(&sqlID); err != nil {
		t.Fatal(err)
	}
	const cols = `kind, queue, state::text, priority, payload::text, max_retries, retry_delay_ms, timeout_ms,
		run_at = dispatched_at, attempt, claim_token, errors::text`
	var rows [2]string
	for i, id := range []uuid.UUID{goID, sqlID} {
		if err := pool.QueryRow(ctx, `SELECT row(`+cols+`)::text FROM tasq_jobs WHERE id = $1`, id).Scan(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if rows[0] != rows[1] {
		t.Errorf("defaults differ from the Go client's:\n  Go  %s\n  SQL %s", rows[0], rows[1])
	}
	if sqlID.Version() != 7 {
		t.Errorf("generated ID %s is version %d, want 7", sqlID, sqlID.Version())
	}
}

// Bad arguments raise SQLSTATE 22023 naming the parameter, and store nothing.
func TestSQLDispatchRefusesBadArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	pool := a.Pool()
	for _, c := range []struct {
		name, call, param string
	}{
		{"empty kind", `tasq_dispatch('')`, "kind"},
		{"NULL kind", `tasq_dispatch(NULL)`, "kind"},
		{"NULL payload", `tasq_dispatch('k', NULL)`, "payload"},
		{"queue with a space", `tasq_dispatch('k', '{}', 'two words')`, "queue"},
		{"queue with a tab", `tasq_dispatch('k', queue => E'a\tb')`, "queue"},
		{"queue with DEL", `tasq_dispatch('k', queue => E'a\x7fb')`, "queue"},
		{"empty queue", `tasq_dispatch('k', queue => '')`, "queue"},
		{"queue of 129 bytes", `tasq_dispatch('k', queue => repeat('q', 129))`, "queue"},
		{"infinite run_at", `tasq_dispatch('k', run_at => 'infinity')`, "run_at"},
		{"priority beyond smallint", `tasq_dispatch('k', priority => 40000)`, "priority"},
		{"max_retries -1", `tasq_dispatch('k', max_retries => -1)`, "max_retries"},
		{"max_retries 2,000,000", `tasq_dispatch('k', max_retries => 2000000)`, "max_retries"},
		{"negative retry_delay", `tasq_dispatch('k', retry_delay => '-1 second')`, "retry_delay"},
		{"retry_delay negative in sum", `tasq_dispatch('k', retry_delay => '1 day -25 hours')`, "retry_delay"},
		{"retry_delay beyond a Go duration", `tasq_dispatch('k', retry_delay => '1000 years')`, "retry_delay"},
		{"NULL retry_delay", `tasq_dispatch('k', retry_delay => NULL)`, "retry_delay"},
		{"negative timeout", `tasq_dispatch('k', timeout => '-1 ms')`, "timeout"},
		{"nil id", `tasq_dispatch('k', id => '00000000-0000-0000-0000-000000000000')`, "id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, "SELECT "+c.call)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%s: err %v, want a PostgreSQL error", c.call, err)
			}
			if pgErr.Code != "22023" {
				t.Errorf("%s: SQLSTATE %s (%s), want 22023", c.call, pgErr.Code, pgErr.Message)
			}
			if !strings.Contains(pgErr.Message, "tasq_dispatch: "+c.param+" ") {
				t.Errorf("%s: message %q does not name %s", c.call, pgErr.Message, c.param)
			}
			if !regexp.MustCompile(`^Pass ` + c.param + `\b`).MatchString(pgErr.Hint) {
				t.Errorf("%s: hint %q does not name %s", c.call, pgErr.Hint, c.param)
			}
		})
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d jobs stored (%v), want none", n, err)
	}
}

// tasq_uuidv7 makes version 7 IDs holding the database's clock, which sort
// in the order they were made: IDs made by separate statements strictly,
// IDs made within one microsecond by their time prefix.
func TestSQLUUIDv7IsTimeOrdered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newAdapter(t)
	pool := a.Pool()

	var prev uuid.UUID
	for i := range 200 {
		var before, after time.Time
		var id uuid.UUID
		if err := pool.QueryRow(ctx, `SELECT clock_timestamp(), tasq_uuidv7(), clock_timestamp()`).Scan(&before, &id, &after); err != nil {
			t.Fatal(err)
		}
		if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v, want 7 and RFC 4122", id, id.Version(), id.Variant())
		}
		// The first 48 bits are the Unix time in ms, the 12 after the
		// version the time within it (ns / 256), as the Go client makes them.
		prefix := binary.BigEndian.Uint64(id[:8])
		at := time.UnixMilli(int64(prefix >> 16)).Add(time.Duration(prefix&0xfff) << 8)
		if at.Before(before.Add(-256*time.Nanosecond)) || at.After(after) { // ns/256 loses up to 255 ns
			t.Fatalf("%s holds the time %v, not between %v and %v", id, at, before, after)
		}
		if i > 0 && strings.Compare(prev.String(), id.String()) >= 0 {
			t.Fatalf("ID %d %s does not sort after the one before it, %s", i, id, prev)
		}
		prev = id
	}

	// Within one statement: never a later ID with an earlier time prefix.
	var outOfOrder, prefixes int
	if err := pool.QueryRow(ctx, `
WITH g AS (SELECT n, tasq_uuidv7() AS id FROM generate_series(1, 5000) AS n),
     p AS (SELECT id, substring(uuid_send(id) FROM 1 FOR 8) AS prefix,
                  lag(substring(uuid_send(id) FROM 1 FOR 8)) OVER (ORDER BY n) AS prev FROM g)
SELECT count(*) FILTER (WHERE prefix < prev), count(DISTINCT prefix) FROM p`).Scan(&outOfOrder, &prefixes); err != nil {
		t.Fatal(err)
	}
	if outOfOrder != 0 || prefixes < 2 {
		t.Errorf("%d IDs with a time before the previous one's, %d distinct times; want 0 and several", outOfOrder, prefixes)
	}

	// It is the column default, for rows inserted by hand.
	var id uuid.UUID
	if err := pool.QueryRow(ctx, `INSERT INTO tasq_jobs (kind) VALUES ('byHand') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if id.Version() != 7 {
		t.Errorf("default id %s is version %d, want 7", id, id.Version())
	}
}
