package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// testAppName is the application_name of the test process's own
// connections, which the termination scenario leaves alone.
const testAppName = "chaos-test"

// sideSQL creates what the suite observes the queue with, in the scenario's
// own database:
//   - chaos_runs: one row per execution of Handle (see recordSQL);
//   - chaos_transitions: one row per change of a job's state, and per write
//     to a finished job, logged by a trigger in the writing transaction, so
//     that a job finished twice, or written after it finished, shows.
const sideSQL = `
CREATE TABLE chaos_runs (
    seq        bigserial   PRIMARY KEY,
    job_id     uuid        NOT NULL,
    attempt    integer     NOT NULL,
    worker     text        NOT NULL,
    token      bigint,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX chaos_runs_job_idx ON chaos_runs (job_id);

CREATE TABLE chaos_transitions (
    seq       bigserial   PRIMARY KEY,
    job_id    uuid        NOT NULL,
    old_state text        NOT NULL,
    new_state text        NOT NULL,
    old_token bigint      NOT NULL,
    new_token bigint      NOT NULL,
    old_by    text,
    new_by    text,
    attempt   integer     NOT NULL,
    finished  boolean     NOT NULL,
    result    jsonb,
    note      text, -- the error history entry the change added, if any
    at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX chaos_transitions_job_idx ON chaos_transitions (job_id, old_token);

CREATE FUNCTION chaos_log_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_transitions (job_id, old_state, new_state, old_token, new_token, old_by, new_by, attempt, finished, result, note)
    VALUES (NEW.id, OLD.state::text, NEW.state::text, OLD.claim_token, NEW.claim_token, OLD.attempted_by,
            NEW.attempted_by, NEW.attempt, NEW.finished_at IS NOT NULL, NEW.result,
            CASE WHEN NEW.errors IS DISTINCT FROM OLD.errors THEN NEW.errors -> -1 ->> 'error' END);
    RETURN NULL;
END
$$;
CREATE TRIGGER chaos_log_transition AFTER UPDATE ON tasq_jobs FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.state::text IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION chaos_log_transition();`

// deadlockTimeoutSQL sets deadlock_timeout for the sessions the workers
// will open on the scenario's database.
const deadlockTimeoutSQL = `DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = %L', current_database(), '100ms');
EXCEPTION WHEN insufficient_privilege THEN NULL;
END $$`

// activeStates are the states of a job that is not finished.
var activeStates = []string{"available", "running", "retryable", "scheduled"}

// run is one scenario: its database, its jobs, its worker children and the
// faults injected into them.
type run struct {
	t       *testing.T
	ctx     context.Context
	plan    plan
	name    string // short scenario name, part of worker IDs
	dsn     string
	pool    *pgxpool.Pool // the test's own connections
	adapter *postgres.Adapter
	ids     []uuid.UUID // ids[n] is the job whose N is n
	began   time.Time

	mu       sync.Mutex
	seq      int
	children []*child // every child started, in order

	faults faults
}

// faults is what a scenario did to the queue.
type faults struct {
	// what names the faults in the figures line ("kills").
	what  string
	count int
	// windows are the times (database clock) at which a fault could disturb
	// the executions of a worker ("" for every worker): a claim held during
	// one may run again.
	windows []window
	// cancels counts the operator's cancellations of running jobs, retries
	// those followed by RetryJob; left are the jobs left cancelled.
	cancels, retries int
	left             map[uuid.UUID]bool
	// cancelledClaims makes the claims an operator cancelled count as
	// disturbed.
	cancelledClaims bool
}

// window is a span of database time during which a fault hit worker (or
// every worker when worker is "").
type window struct {
	worker   string
	from, to time.Time
}

// never is the end of a window that never closes (a killed worker).
var never = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)

// newRun prepares a scenario on the migrated, empty database at dsn:
// the side tables, and p.Jobs dispatched jobs. It starts no worker.
func newRun(t *testing.T, name, dsn string) *run {
	t.Helper()
	return newRunOf(t, name, dsn, currentPlan().Jobs, func(n int) any { return &Job{N: n} })
}

// newRunOf is newRun with jobs jobs, job n being the task task(n).
func newRunOf(t *testing.T, name, dsn string, jobs int, task func(n int) any) *run {
	t.Helper()
	p := currentPlan()
	p.Jobs = jobs
	ctx, cancel := context.WithTimeout(context.Background(), p.Chaos+p.Drain+3*time.Minute)
	t.Cleanup(cancel)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse the database URL: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = testAppName
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	a, err := postgres.NewFromPool(ctx, pool)
	if err != nil {
		t.Fatalf("postgres.NewFromPool: %v", err)
	}
	if _, err := pool.Exec(ctx, sideSQL); err != nil {
		t.Fatalf("create the side tables: %v", err)
	}
	// A deadlock among TasQ's statements is a bug this suite reports (see
	// drainAndVerify). Detected after 100 ms rather than the default 1 s, it
	// is counted every time, instead of sometimes passing as a stall that
	// expires leases. Only a superuser may set it; without, keep the default.
	if _, err := pool.Exec(ctx, deadlockTimeoutSQL); err != nil {
		t.Logf("keeping the server's deadlock_timeout: %v", err)
	}
	r := &run{t: t, ctx: ctx, plan: p, name: name, dsn: dsn, pool: pool, adapter: a,
		faults: faults{left: map[uuid.UUID]bool{}}}

	client, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	r.ids = make([]uuid.UUID, 0, p.Jobs)
	const chunk = 5000
	for from := 0; from < p.Jobs; from += chunk {
		tasks := make([]any, 0, chunk)
		for n := from; n < min(from+chunk, p.Jobs); n++ {
			tasks = append(tasks, task(n))
		}
		ids, err := client.DispatchMany(ctx, tasks)
		if err != nil {
			t.Fatalf("dispatch jobs %d..: %v", from, err)
		}
		r.ids = append(r.ids, ids...)
	}
	r.began = time.Now()
	return r
}

// child is one worker process.
type child struct {
	id     string
	cmd    *exec.Cmd
	stdout bytes.Buffer // read only after done
	stderr bytes.Buffer // read only after done
	done   chan struct{}
	err    error // Wait's error, once done is closed

	mu     sync.Mutex
	killed bool
}

// startWorker starts a worker child with a new, distinct worker ID. The
// child is killed when the test ends, whatever happened.
func (r *run) startWorker() *child {
	r.t.Helper()
	r.mu.Lock()
	r.seq++
	c := &child{id: fmt.Sprintf("%s-w%d", r.name, r.seq), done: make(chan struct{})}
	r.children = append(r.children, c)
	r.mu.Unlock()
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envChild+"="+c.id, envChildDSN+"="+r.dsn)
	c.cmd.Stdout = &c.stdout
	c.cmd.Stderr = &c.stderr
	if os.Getenv(envLog) == "1" {
		c.cmd.Stderr = io.MultiWriter(&c.stderr, os.Stderr)
	}
	if err := c.cmd.Start(); err != nil {
		r.t.Fatalf("start worker %s: %v", c.id, err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	r.t.Cleanup(func() { c.kill() })
	return c
}

// live returns the children that were not killed and still run.
func (r *run) live() []*child {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*child
	for _, c := range r.children {
		c.mu.Lock()
		killed := c.killed
		c.mu.Unlock()
		select {
		case <-c.done:
		default:
			if !killed {
				out = append(out, c)
			}
		}
	}
	return out
}

// signal sends sig to the child.
func (c *child) signal(sig syscall.Signal) error {
	if err := c.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("send %v to worker %s: %w", sig, c.id, err)
	}
	return nil
}

// kill SIGKILLs the child (also when it is stopped) and waits for it.
func (c *child) kill() {
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stopGracefully SIGTERMs the child and waits up to within for it to exit;
// it reports whether the child exited cleanly, and kills it if not.
func (c *child) stopGracefully(within time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGCONT)
	if err := c.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-c.done:
	case <-time.After(within):
		c.kill()
		return fmt.Errorf("worker %s did not stop within %v of SIGTERM; killed it", c.id, within)
	}
	var exit *exec.ExitError
	if errors.As(c.err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			// SIGTERM came before childMain set up its handler, which it
			// does before anything else: the worker never started.
			return nil
		}
	}
	if c.err != nil {
		return fmt.Errorf("worker %s exited with %v:\n%s", c.id, c.err, tail(c.stderr.String(), 20))
	}
	return nil
}

// stats parses the Stats line of a child that stopped gracefully.
func (c *child) stats() (worker.Stats, bool) {
	for line := range strings.Lines(c.stdout.String()) {
		if rest, ok := strings.CutPrefix(line, statsPrefix); ok {
			var s worker.Stats
			if json.Unmarshal([]byte(rest), &s) == nil {
				return s, true
			}
		}
	}
	return worker.Stats{}, false
}

// dbNow returns the database's clock, which timestamps the side tables.
func (r *run) dbNow() time.Time {
	r.t.Helper()
	var now time.Time
	r.waitFor(30*time.Second, "the database to answer", func(ctx context.Context) (bool, error) {
		return true, r.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now)
	})
	return now
}

// dbClock is dbNow for goroutines other than the test's: it returns the error.
func (r *run) dbClock() (time.Time, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	var now time.Time
	err := r.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now)
	return now, err
}

// waitFor polls cond every 50 ms until it holds or within passes, and
// fails the test then. An error from cond (a restarting database) counts
// as "not yet"; the last one is reported on timeout.
func (r *run) waitFor(within time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		ok, err := cond(ctx)
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %v waiting for %s (last error: %v); jobs by state: %s", within, what, lastErr, r.stateSummary())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// active counts the jobs that are not finished.
func (r *run) active(ctx context.Context) (int, error) {
	var n int
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE state::text = ANY($1)`, activeStates).Scan(&n)
	return n, err
}

// stateSummary lists the job counts by state, for messages.
func (r *run) stateSummary() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var s string
	err := r.pool.QueryRow(ctx, `SELECT coalesce(string_agg(state::text || '=' || n, ' ' ORDER BY state), 'none')
FROM (SELECT state, count(*) AS n FROM tasq_jobs GROUP BY state) AS c`).Scan(&s)
	if err != nil {
		return "(cannot count: " + err.Error() + ")"
	}
	return s
}

// startWorkers starts the plan's workers and waits until they are busy, so
// that the chaos meets running jobs.
func (r *run) startWorkers() {
	r.t.Helper()
	for range r.plan.Workers {
		r.startWorker()
	}
	r.waitFor(60*time.Second, "the workers to get going", func(ctx context.Context) (bool, error) {
		var running, done int
		err := r.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'completed') FROM tasq_jobs`).Scan(&running, &done)
		return running > 0 && done >= min(50, r.plan.Jobs/20), err
	})
}

// chaosGoesOn reports whether the chaos should go on: its time is not up
// and jobs are left to disturb.
func (r *run) chaosGoesOn(began time.Time) bool {
	if time.Since(began) >= r.plan.Chaos || r.ctx.Err() != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	n, err := r.active(ctx)
	return err != nil || n > 0 // a database that does not answer is part of the chaos
}

// pause sleeps a random duration in [lo, hi): the rhythm of the faults.
func (r *run) pause(lo, hi time.Duration) {
	select {
	case <-time.After(lo + randDuration(hi-lo)):
	case <-r.ctx.Done():
	}
}

// drainAndVerify lets the live workers finish every job, stops them
// gracefully and checks the promises; it logs the scenario's figures.
func (r *run) drainAndVerify() {
	r.t.Helper()
	chaosEnded := time.Now()
	r.waitFor(r.plan.Drain, "every job to finish", func(ctx context.Context) (bool, error) {
		n, err := r.active(ctx)
		return n == 0, err
	})
	drained := time.Since(r.began)
	drainTook := time.Since(chaosEnded)

	// Stop the workers gracefully: any outcome still on its way is written
	// (or refused) before the counting starts.
	var stale, lost int64
	var wg sync.WaitGroup
	for _, c := range r.live() {
		wg.Go(func() {
			if err := c.stopGracefully(30 * time.Second); err != nil {
				r.t.Error(err)
			}
		})
	}
	wg.Wait()
	r.mu.Lock()
	children := append([]*child(nil), r.children...)
	r.mu.Unlock()
	for _, c := range children {
		<-c.done
		if s, ok := c.stats(); ok {
			stale += s.Stale
			lost += s.LostLeases
		}
		if out := c.stderr.String(); strings.Contains(out, "DATA RACE") || strings.Contains(out, "panic:") {
			r.t.Errorf("worker %s reported a race or a panic:\n%s", c.id, tail(out, 60))
		}
	}

	v := r.verify()
	// The workers have exited, so their backends have flushed their
	// statistics. Every statement on this database is TasQ's or this
	// suite's single-row edits and lock-free reads: a deadlock is TasQ's
	// statements taking row locks in conflicting orders. PostgreSQL breaks
	// it only after deadlock_timeout (1 s by default), while both sides
	// wait, so it stalls outcomes and lease renewals long enough for
	// leases to expire under a healthy worker.
	var deadlocks int64
	if err := r.pool.QueryRow(r.ctx, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&deadlocks); err != nil {
		r.t.Errorf("read pg_stat_database: %v", err)
	} else if deadlocks > 0 {
		r.t.Errorf("BROKEN (lock order): PostgreSQL detected %d deadlocks among the statements on this database; "+
			"its server log names them (seen: a worker's lease renewal, ExtendLeases, against its own outcome batch, Finish, "+
			"both updating the same running rows in different orders)", deadlocks)
	}
	r.t.Logf("figures %s: jobs %d, %s %d, executions %d, duplicate executions %d (bound %d: claims held through a fault; %s x concurrency = %d), "+
		"unexplained %d (+%d lease expiries on undisturbed workers), deadlocks %d, lost leases seen %d, stale outcomes refused %d, drained in %v after the chaos, wall %v",
		r.name, len(r.ids), r.faults.what, r.faults.count, v.executions, v.duplicates, v.bound, r.faults.what, r.faults.count*r.plan.Concurrency,
		v.unexplained, v.expired, deadlocks, lost, stale, drainTook.Round(time.Millisecond), drained.Round(time.Millisecond))
	if r.faults.cancels > 0 {
		r.t.Logf("figures %s: operator cancels of running jobs %d, retried %d, left cancelled %d", r.name, r.faults.cancels, r.faults.retries, len(r.faults.left))
	}
}

// verdict is what verify counted.
type verdict struct {
	executions, duplicates, bound int
	// expired counts executions that no fault explains whose claims ended
	// in a lease expiry; unexplained the others.
	expired, unexplained int
}

// violation is a query for rows that break a promise; it must select one
// json column per offending row.
type violation struct {
	promise string
	sql     string
}

// verify checks the promises against the final database and reports every
// breach with examples.
func (r *run) verify() verdict {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t := r.t

	// Nothing lost, nothing stuck, each result its job's N.
	type row struct {
		state    string
		result   []byte
		finished bool
		attempt  int
		by       string
		errs     string
	}
	rows, err := r.pool.Query(ctx, `SELECT id, state::text, result, finished_at IS NOT NULL, attempt, coalesce(attempted_by, ''), errors::text FROM tasq_jobs`)
	if err != nil {
		t.Fatalf("read the jobs: %v", err)
	}
	got := make(map[uuid.UUID]row, len(r.ids))
	for rows.Next() {
		var id uuid.UUID
		var x row
		if err := rows.Scan(&id, &x.state, &x.result, &x.finished, &x.attempt, &x.by, &x.errs); err != nil {
			t.Fatalf("read the jobs: %v", err)
		}
		got[id] = x
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read the jobs: %v", err)
	}
	var missing, wrong, badResult []string
	for n, id := range r.ids {
		x, ok := got[id]
		want := "completed"
		if r.faults.left[id] {
			want = "cancelled"
		}
		switch {
		case !ok:
			missing = append(missing, id.String())
		case x.state != want || !x.finished:
			wrong = append(wrong, fmt.Sprintf("job %s (N=%d) is %s (finished_at set: %v), want %s; attempt %d by %q, errors %s",
				id, n, x.state, x.finished, want, x.attempt, x.by, tail(x.errs, 3)))
		case want == "completed" && string(x.result) != strconv.Itoa(n):
			badResult = append(badResult, fmt.Sprintf("job %s: result %s, want %d", id, x.result, n))
		}
	}
	if len(got) != len(r.ids) {
		t.Errorf("BROKEN: the table holds %d jobs, %d were dispatched", len(got), len(r.ids))
	}
	if len(missing) > 0 {
		t.Errorf("BROKEN (lost): %d dispatched jobs are gone, e.g. %v", len(missing), first(missing, 5))
	}
	if len(wrong) > 0 {
		t.Errorf("BROKEN (lost or stuck): %d jobs did not end as they should:\n%s", len(wrong), strings.Join(first(wrong, 10), "\n"))
	}
	if len(badResult) > 0 {
		t.Errorf("BROKEN: %d completed jobs hold another job's result:\n%s", len(badResult), strings.Join(first(badResult, 10), "\n"))
	}

	// Finished once, by the execution that holds it: the transitions log.
	checks := []violation{
		{"a completed job was written again after it completed",
			`SELECT row_to_json(t) FROM chaos_transitions t WHERE old_state = 'completed'`},
		{"a job was completed more than once",
			`SELECT json_build_object('job_id', job_id, 'completions', count(*)) FROM chaos_transitions WHERE new_state = 'completed' GROUP BY job_id HAVING count(*) > 1`},
		{"a job was completed other than from its running claim (state, token or worker changed by the completion)",
			`SELECT row_to_json(t) FROM chaos_transitions t WHERE new_state = 'completed'
			 AND (old_state <> 'running' OR old_token <> new_token OR old_by IS DISTINCT FROM new_by OR NOT finished)`},
		{"a job was completed by an execution that did not hold it (no execution of the completing claim was recorded)",
			`SELECT row_to_json(t) FROM chaos_transitions t WHERE new_state = 'completed' AND NOT EXISTS
			 (SELECT 1 FROM chaos_runs r WHERE r.job_id = t.job_id AND r.worker = t.new_by AND r.token = t.new_token)`},
		{"a failed or cancelled job was written other than by an operator's retry",
			`SELECT row_to_json(t) FROM chaos_transitions t WHERE old_state IN ('failed', 'cancelled') AND new_state <> 'available'`},
		{"a job failed (its retry budget ran out, or it could not run)",
			`SELECT row_to_json(t) FROM chaos_transitions t WHERE new_state = 'failed'`},
		{"a job was cancelled by something other than the test's operator (the task never cancels itself)",
			`SELECT row_to_json(t) FROM chaos_transitions t WHERE new_state = 'cancelled' AND NOT $1`},
	}
	for _, c := range checks {
		var n int
		var examples []string
		q := `SELECT count(*), coalesce((array_agg(j::text))[1:5], '{}') FROM (` + c.sql + `) AS v(j)`
		var args []any
		if strings.Contains(c.sql, "$1") {
			args = append(args, r.faults.cancels > 0)
		}
		if err := r.pool.QueryRow(ctx, q, args...).Scan(&n, &examples); err != nil {
			t.Fatalf("check %q: %v", c.promise, err)
		}
		if n > 0 {
			t.Errorf("BROKEN: %s: %d times, e.g.\n%s", c.promise, n, strings.Join(examples, "\n"))
		}
	}
	var retriesSeen int
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM chaos_transitions WHERE old_state = 'cancelled' AND new_state = 'available'`).Scan(&retriesSeen); err != nil {
		t.Fatal(err)
	}
	if retriesSeen != r.faults.retries {
		t.Errorf("the operator retried %d cancelled jobs, the log shows %d", r.faults.retries, retriesSeen)
	}

	// Duplicate executions, and whether each is explained by a fault: an
	// execution that did not complete its job must belong to a claim that a
	// fault disturbed (held while its worker was killed, frozen, cut off or
	// its database restarting, or cancelled by the operator).
	var v verdict
	var distinct int
	if err := r.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT job_id) FROM chaos_runs`).Scan(&v.executions, &distinct); err != nil {
		t.Fatal(err)
	}
	v.duplicates = v.executions - distinct
	workers := make([]string, len(r.faults.windows))
	froms := make([]time.Time, len(r.faults.windows))
	tos := make([]time.Time, len(r.faults.windows))
	for i, w := range r.faults.windows {
		workers[i], froms[i], tos[i] = w.worker, w.from, w.to
	}
	var expired, suspicious []string
	err = r.pool.QueryRow(ctx, `
WITH claims AS (
    SELECT c.job_id, c.new_token AS token, c.new_by AS worker, c.at AS from_at, e.at AS to_at,
           e.new_state AS ended_as, e.note AS end_note
    FROM chaos_transitions c
    LEFT JOIN LATERAL (SELECT * FROM chaos_transitions e
                       WHERE e.job_id = c.job_id AND e.old_token = c.new_token AND e.old_state = 'running'
                       ORDER BY e.seq LIMIT 1) AS e ON true
    WHERE c.new_state = 'running'
), affected AS (
    SELECT * FROM claims cl
    WHERE ($4 AND cl.ended_as = 'cancelled')
       OR EXISTS (SELECT 1 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS f(worker, a, b)
                  WHERE (f.worker = '' OR f.worker = cl.worker) AND cl.from_at <= f.b AND coalesce(cl.to_at, 'infinity') >= f.a)
), unexplained AS (
    SELECT r.*, EXISTS (SELECT 1 FROM claims cl WHERE cl.job_id = r.job_id AND cl.worker = r.worker
                        AND (r.token IS NULL OR cl.token = r.token)
                        AND cl.ended_as = 'available' AND cl.end_note LIKE 'lease expired%') AS expired
    FROM chaos_runs r
    WHERE NOT EXISTS (SELECT 1 FROM chaos_transitions d WHERE d.job_id = r.job_id AND d.new_state = 'completed'
                      AND d.new_by = r.worker AND d.new_token = r.token)
      AND NOT EXISTS (SELECT 1 FROM affected a WHERE a.job_id = r.job_id AND a.worker = r.worker
                      AND (r.token IS NULL OR a.token = r.token))
)
SELECT (SELECT count(*) FROM affected),
       coalesce((SELECT array_agg(row_to_json(u)::text ORDER BY u.seq) FROM unexplained u WHERE expired), '{}'),
       coalesce((SELECT array_agg(row_to_json(u)::text ORDER BY u.seq) FROM unexplained u WHERE NOT expired), '{}')`,
		workers, froms, tos, r.faults.cancelledClaims).Scan(&v.bound, &expired, &suspicious)
	if err != nil {
		t.Fatalf("count the disturbed claims: %v", err)
	}
	v.expired, v.unexplained = len(expired), len(suspicious)
	if v.duplicates > v.bound+v.expired {
		t.Errorf("duplicate executions %d exceed the claims the faults disturbed (%d) and the leases that expired under undisturbed workers (%d)",
			v.duplicates, v.bound, v.expired)
	}
	if len(expired) > 0 {
		// At-least-once allows these, and no promise is broken, but no
		// fault of ours explains them: a worker that was not disturbed did
		// not renew its lease in time (a machine too busy for the lease?).
		t.Logf("NOTE: %d executions on undisturbed workers lost their leases to expiry and ran again elsewhere, e.g.\n%s",
			len(expired), strings.Join(r.histories(ctx, expired), "\n"))
	}
	if len(suspicious) > 0 {
		t.Errorf("BROKEN?: %d executions did not complete their job although no fault disturbed their claim and their lease did not expire (an outcome refused that should have applied?), e.g.\n%s",
			len(suspicious), strings.Join(r.histories(ctx, suspicious), "\n"))
	}
	return v
}

// histories returns, for up to 5 executions given as JSON rows of
// chaos_runs, the execution and its job's transitions.
func (r *run) histories(ctx context.Context, execs []string) []string {
	var out []string
	for _, x := range first(execs, 5) {
		var e struct {
			JobID uuid.UUID `json:"job_id"`
		}
		_ = json.Unmarshal([]byte(x), &e)
		var h string
		err := r.pool.QueryRow(ctx, `SELECT coalesce(string_agg(format('%s %s->%s token %s->%s by %s->%s %s', at, old_state, new_state,
    old_token, new_token, old_by, new_by, coalesce(note, '')), E'\n  ' ORDER BY seq), '')
FROM chaos_transitions WHERE job_id = $1`, e.JobID).Scan(&h)
		if err != nil {
			h = "(cannot read its transitions: " + err.Error() + ")"
		}
		out = append(out, x+"\n  "+h)
	}
	return out
}

// first returns at most n elements of s.
func first(s []string, n int) []string { return s[:min(n, len(s))] }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// randDuration returns a random duration in [0, d).
func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
