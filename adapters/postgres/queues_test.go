package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/adapters/postgres/pgschema"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// controlEnv is a database with n adapters on it, each with its own pool,
// standing in for workers on different machines.
type controlEnv struct {
	dsn      string
	adapters []*postgres.Adapter
}

func newControlEnv(t *testing.T, n int) *controlEnv {
	t.Helper()
	e := &controlEnv{dsn: testpg.NewDatabase(t)}
	for range n {
		a, err := postgres.New(context.Background(), e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		e.adapters = append(e.adapters, a)
	}
	return e
}

func (e *controlEnv) dispatch(t *testing.T, q string, payloads ...string) []uuid.UUID {
	t.Helper()
	jobs := make([]queue.NewJob, len(payloads))
	ids := make([]uuid.UUID, len(payloads))
	for i, p := range payloads {
		ids[i] = uuid.Must(uuid.NewV7())
		jobs[i] = queue.NewJob{ID: ids[i], Kind: "K", Queue: q, Payload: []byte(p), MaxRetries: 1}
	}
	if err := e.adapters[0].Insert(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	return ids
}

func claimN(t *testing.T, a *postgres.Adapter, q string, n int) []*queue.Job {
	t.Helper()
	jobs, err := a.Claim(context.Background(), queue.ClaimRequest{Queue: q, WorkerID: "w", Limit: n, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestQueuePauseResume: a paused queue is not claimed by anyone, other
// queues are, running jobs finish, and resume (from Go or SQL) wakes the
// queue's workers.
func TestQueuePauseResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newControlEnv(t, 2)
	a, b := e.adapters[0], e.adapters[1]
	e.dispatch(t, "mail", `{}`, `{}`, `{}`)
	e.dispatch(t, "other", `{}`)
	running := claimN(t, a, "mail", 1)
	if len(running) != 1 {
		t.Fatalf("claimed %d jobs before the pause; want 1", len(running))
	}

	if err := a.PauseQueue(ctx, "mail"); err != nil {
		t.Fatal(err)
	}
	if err := a.PauseQueue(ctx, "mail"); err != nil { // again: no change
		t.Fatal(err)
	}
	for _, ad := range e.adapters {
		if got := claimN(t, ad, "mail", 10); len(got) != 0 {
			t.Fatalf("claimed %d jobs of a paused queue", len(got))
		}
	}
	if got := claimN(t, b, "other", 10); len(got) != 1 {
		t.Fatalf("claimed %d jobs of an unpaused queue; want 1", len(got))
	}
	// The job that was running when the queue was paused finishes.
	if n, err := a.Finish(ctx, "w", []queue.Outcome{queue.Completed(running[0], nil)}); err != nil || n != 1 {
		t.Fatalf("finish a job of the paused queue: %d, %v", n, err)
	}
	states, err := b.QueueStates(ctx)
	if err != nil || len(states) != 1 || states[0].Name != "mail" || !states[0].Paused || states[0].PausedAt.IsZero() {
		t.Fatalf("QueueStates = %+v, %v; want mail paused", states, err)
	}

	sub, stop := context.WithCancel(ctx)
	defer stop()
	wake, err := b.Subscribe(sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ResumeQueue(ctx, "mail"); err != nil {
		t.Fatal(err)
	}
	expectWake(t, wake, "mail", "other") // other: its dispatch's wake-up may come late
	if got := claimN(t, b, "mail", 10); len(got) != 2 {
		t.Fatalf("claimed %d jobs after resume; want 2", len(got))
	}
	if states, _ := b.QueueStates(ctx); len(states) != 0 {
		t.Fatalf("QueueStates after resume = %+v; want none (no row left)", states)
	}

	// The same from SQL.
	e.dispatch(t, "mail", `{}`)
	if _, err := a.Pool().Exec(ctx, `SELECT tasq_pause_queue('mail')`); err != nil {
		t.Fatal(err)
	}
	if got := claimN(t, b, "mail", 10); len(got) != 0 {
		t.Fatalf("claimed %d jobs of a queue paused from SQL", len(got))
	}
	if _, err := a.Pool().Exec(ctx, `SELECT tasq_resume_queue('mail')`); err != nil {
		t.Fatal(err)
	}
	expectWake(t, wake, "mail", "other")
	if got := claimN(t, b, "mail", 10); len(got) != 1 {
		t.Fatalf("claimed %d jobs after a resume from SQL; want 1", len(got))
	}
}

// TestQueueLimitsBadInput: limits that cannot be applied are refused with
// the field at fault, and nothing is stored.
func TestQueueLimitsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newControlEnv(t, 1).adapters[0]
	for _, c := range []struct {
		l    queue.QueueLimits
		want string
	}{
		{queue.QueueLimits{Total: queue.Limit{MaxRunning: -1}}, "Total.MaxRunning"},
		{queue.QueueLimits{Total: queue.Limit{MaxStarts: 5}}, "Per is 0s"},
		{queue.QueueLimits{Total: queue.Limit{Per: time.Second}}, "MaxStarts is 0"},
		{queue.QueueLimits{Total: queue.Limit{MaxStarts: queue.MaxStartsLimit + 1, Per: time.Second}}, "MaxStartsLimit"},
		{queue.QueueLimits{Total: queue.Limit{MaxStarts: 1, Per: 1500 * time.Microsecond}}, "whole milliseconds"},
		{queue.QueueLimits{PerKey: queue.Limit{MaxRunning: 1}}, "need KeyField"},
		{queue.QueueLimits{KeyField: "customer"}, "PerKey limits nothing"},
		{queue.QueueLimits{KeyField: "a..b", PerKey: queue.Limit{MaxRunning: 1}}, "empty part"},
	} {
		err := a.SetQueueLimits(ctx, "q", c.l)
		if !errors.Is(err, queue.ErrInvalidConfig) || !contains(err, c.want) {
			t.Errorf("SetQueueLimits(%+v) = %v; want ErrInvalidConfig saying %q", c.l, err, c.want)
		}
	}
	for _, name := range []string{"", "has space", string(make([]byte, queue.MaxQueueNameLength+1))} {
		if err := a.SetQueueLimits(ctx, name, queue.QueueLimits{Total: queue.Limit{MaxRunning: 1}}); !errors.Is(err, queue.ErrInvalidConfig) {
			t.Errorf("SetQueueLimits on queue %.10q: %v; want ErrInvalidConfig", name, err)
		}
		if err := a.PauseQueue(ctx, name); !errors.Is(err, queue.ErrInvalidConfig) {
			t.Errorf("PauseQueue(%.10q): %v; want ErrInvalidConfig", name, err)
		}
	}
	if states, err := a.QueueStates(ctx); err != nil || len(states) != 0 {
		t.Fatalf("QueueStates after refused limits = %+v, %v; want none", states, err)
	}
	// A round trip, and removal.
	want := queue.QueueLimits{Total: queue.Limit{MaxRunning: 3, MaxStarts: 10, Per: time.Second},
		KeyField: "customer.id", PerKey: queue.Limit{MaxRunning: 1, MaxStarts: 2, Per: time.Minute}}
	if err := a.SetQueueLimits(ctx, "q", want); err != nil {
		t.Fatal(err)
	}
	if states, err := a.QueueStates(ctx); err != nil || len(states) != 1 || states[0].Limits != want || states[0].Paused {
		t.Fatalf("QueueStates = %+v, %v; want q with %+v", states, err, want)
	}
	if err := a.SetQueueLimits(ctx, "q", queue.QueueLimits{}); err != nil {
		t.Fatal(err)
	}
	if states, err := a.QueueStates(ctx); err != nil || len(states) != 0 {
		t.Fatalf("QueueStates after removing the limits = %+v, %v; want none", states, err)
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// runClaimers has every adapter claim jobs of q in a loop, as workers do,
// and hold each for a random few milliseconds before finishing it, until
// total jobs are done. It records, in Go, how many jobs were held at once
// overall and per key (the payload's "customer"): claims count after they
// return and finishes before they are sent, so these figures can only be
// lower than the database's, never higher.
func runClaimers(t *testing.T, e *controlEnv, q string, total int) (peak int, peakPerKey map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu      sync.Mutex
		held    int
		perKey  = map[string]int{}
		done    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	peakPerKey = map[string]int{}
	fail := func(err error) { errOnce.Do(func() { failure = err; cancel() }) }
	for i, a := range e.adapters {
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				worker := fmt.Sprintf("w%d-%d", i, g)
				for done.Load() < int64(total) && ctx.Err() == nil {
					jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: q, WorkerID: worker, Limit: 3, Lease: time.Minute})
					if err != nil {
						if ctx.Err() == nil {
							fail(err)
						}
						return
					}
					if len(jobs) == 0 {
						time.Sleep(2 * time.Millisecond)
						continue
					}
					mu.Lock()
					held += len(jobs)
					peak = max(peak, held)
					for _, j := range jobs {
						k := customerOf(j.Payload)
						perKey[k]++
						peakPerKey[k] = max(peakPerKey[k], perKey[k])
					}
					mu.Unlock()
					time.Sleep(time.Duration(1+rand.IntN(8)) * time.Millisecond)
					outs := make([]queue.Outcome, len(jobs))
					mu.Lock()
					held -= len(jobs)
					for i, j := range jobs {
						perKey[customerOf(j.Payload)]--
						outs[i] = queue.Completed(j, nil)
					}
					mu.Unlock()
					if n, err := a.Finish(ctx, worker, outs); err != nil || n != len(outs) {
						fail(fmt.Errorf("finish: %d of %d, %v", n, len(outs), err))
						return
					}
					done.Add(int64(len(jobs)))
				}
			}()
		}
	}
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	if got := done.Load(); got != int64(total) {
		t.Fatalf("%d of %d jobs done: %v", got, total, ctx.Err())
	}
	return peak, peakPerKey
}

func customerOf(payload []byte) string {
	var p struct{ Customer string }
	_ = json.Unmarshal(payload, &p)
	return p.Customer
}

// startTimes returns the claim times (attempted_at) of the queue's jobs,
// per customer, sorted.
func startTimes(t *testing.T, e *controlEnv, q string) map[string][]time.Time {
	t.Helper()
	rows, err := e.adapters[0].Pool().Query(context.Background(),
		`SELECT coalesce(payload->>'customer', ''), attempted_at FROM tasq_jobs WHERE queue = $1 ORDER BY attempted_at`, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]time.Time{}
	for rows.Next() {
		var k string
		var at time.Time
		if err := rows.Scan(&k, &at); err != nil {
			t.Fatal(err)
		}
		out[k] = append(out[k], at)
	}
	return out
}

// checkWindow fails when some interval of length per holds more than max of
// the sorted times ts.
func checkWindow(t *testing.T, what string, ts []time.Time, maxStarts int, per time.Duration) {
	t.Helper()
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	for i := 0; i+maxStarts < len(ts); i++ {
		if gap := ts[i+maxStarts].Sub(ts[i]); gap < per {
			t.Fatalf("%s: starts %d and %d are %v apart: %d starts within %v, limit %d", what, i, i+maxStarts, gap, maxStarts+1, per, maxStarts)
		}
	}
}

// TestQueueConcurrencyLimit: with many claimers on several connections, no
// more jobs of the queue run at once than MaxRunning, and all of them run.
func TestQueueConcurrencyLimit(t *testing.T) {
	t.Parallel()
	e := newControlEnv(t, 4)
	if err := e.adapters[0].SetQueueLimits(context.Background(), "limited", queue.QueueLimits{Total: queue.Limit{MaxRunning: 3}}); err != nil {
		t.Fatal(err)
	}
	payloads := make([]string, 150)
	for i := range payloads {
		payloads[i] = `{}`
	}
	e.dispatch(t, "limited", payloads...)
	peak, _ := runClaimers(t, e, "limited", len(payloads))
	t.Logf("peak concurrency %d (limit 3)", peak)
	if peak > 3 {
		t.Fatalf("peak concurrency %d; the limit is 3", peak)
	}
	if peak < 2 {
		t.Fatalf("peak concurrency %d with 8 claimers; the limit (3) should have been reached or nearly", peak)
	}
}

// TestQueueRateLimit: no interval of the period, wherever it falls, holds
// more starts than MaxStarts.
func TestQueueRateLimit(t *testing.T) {
	t.Parallel()
	e := newControlEnv(t, 3)
	const maxStarts, per = 4, 150 * time.Millisecond
	if err := e.adapters[0].SetQueueLimits(context.Background(), "rated", queue.QueueLimits{Total: queue.Limit{MaxStarts: maxStarts, Per: per}}); err != nil {
		t.Fatal(err)
	}
	payloads := make([]string, 30)
	for i := range payloads {
		payloads[i] = `{}`
	}
	e.dispatch(t, "rated", payloads...)
	began := time.Now()
	runClaimers(t, e, "rated", len(payloads))
	took := time.Since(began)
	ts := startTimes(t, e, "rated")[""]
	checkWindow(t, "queue", ts, maxStarts, per)
	// 30 jobs at 4 per 150 ms cannot take less than 7 full periods.
	if took < 7*per {
		t.Fatalf("30 jobs took %v; at %d per %v they cannot take less than %v", took, maxStarts, per, 7*per)
	}
	t.Logf("30 jobs in %v", took)
}

// TestQueuePerKeyLimits: each customer has at most one job running and two
// starts per period, while the queue as a whole runs up to four.
func TestQueuePerKeyLimits(t *testing.T) {
	t.Parallel()
	e := newControlEnv(t, 4)
	const per = 200 * time.Millisecond
	limits := queue.QueueLimits{
		Total:    queue.Limit{MaxRunning: 4},
		KeyField: "customer",
		PerKey:   queue.Limit{MaxRunning: 1, MaxStarts: 2, Per: per},
	}
	if err := e.adapters[0].SetQueueLimits(context.Background(), "keyed", limits); err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for i := range 60 {
		payloads = append(payloads, fmt.Sprintf(`{"customer":"c%d"}`, i%6))
	}
	e.dispatch(t, "keyed", payloads...)
	peak, perKey := runClaimers(t, e, "keyed", len(payloads))
	t.Logf("peak %d, per customer %v", peak, perKey)
	if peak > 4 {
		t.Fatalf("peak concurrency %d; the queue's limit is 4", peak)
	}
	for k, n := range perKey {
		if n > 1 {
			t.Fatalf("customer %q had %d jobs running at once; the per-key limit is 1", k, n)
		}
	}
	for k, ts := range startTimes(t, e, "keyed") {
		checkWindow(t, "customer "+k, ts, 2, per)
	}
}

// TestQueueLimitWithAKilledWorker: a worker that dies (or freezes) holding
// jobs of a limited queue keeps their slots until its leases expire and
// maintenance rescues the jobs; only then can another worker claim, and the
// dead worker's late outcomes are refused. At no point do more jobs of the
// queue run than the limit.
func TestQueueLimitWithAKilledWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newControlEnv(t, 2)
	dead, alive := e.adapters[0], e.adapters[1]
	if err := dead.SetQueueLimits(ctx, "limited", queue.QueueLimits{Total: queue.Limit{MaxRunning: 2}}); err != nil {
		t.Fatal(err)
	}
	e.dispatch(t, "limited", `{}`, `{}`, `{}`, `{}`)
	running := func() int {
		t.Helper()
		var n int
		if err := dead.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE queue = 'limited' AND state = 'running'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 2 {
			t.Fatalf("%d jobs of the queue are running; the limit is 2", n)
		}
		return n
	}
	held, err := dead.Claim(ctx, queue.ClaimRequest{Queue: "limited", WorkerID: "dead", Limit: 10, Lease: 300 * time.Millisecond})
	if err != nil || len(held) != 2 {
		t.Fatalf("the first worker claimed %d jobs, %v; want the limit, 2", len(held), err)
	}
	// The worker dies here: no outcome, no renewal.
	var got []*queue.Job
	deadline := time.Now().Add(10 * time.Second)
	for len(got) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dead worker's slots were never given back")
		}
		running()
		if _, _, err := alive.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err = alive.Claim(ctx, queue.ClaimRequest{Queue: "limited", WorkerID: "alive", Limit: 10, Lease: time.Minute}); err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if n := running(); n != 2 || len(got) != 2 {
		t.Fatalf("after the rescue the second worker claimed %d and %d run; want 2 and 2", len(got), n)
	}
	outs := []queue.Outcome{queue.Completed(held[0], nil), queue.Completed(held[1], nil)}
	if n, err := dead.Finish(ctx, "dead", outs); err != nil || n != 0 {
		t.Fatalf("the dead worker's late outcomes: %d applied, %v; want none", n, err)
	}
	running()
}

// TestFinishWakesLimitedQueue: a job finishing in a limited queue makes room
// there, so the adapter wakes the queue's workers (NOTIFY with the queue's
// name) — on the short path of plain completions and on the general one.
func TestFinishWakesLimitedQueue(t *testing.T) {
	t.Parallel()
	e := newControlEnv(t, 1)
	ctx, a := context.Background(), e.adapters[0]
	if err := a.SetQueueLimits(ctx, "roomy", queue.QueueLimits{Total: queue.Limit{MaxRunning: 5}}); err != nil {
		t.Fatal(err)
	}
	e.dispatch(t, "roomy", `{}`, `{}`)
	jobs := claimN(t, a, "roomy", 2)
	if len(jobs) != 2 {
		t.Fatalf("claimed %d jobs, want 2", len(jobs))
	}
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN "+pgschema.DefaultChannel); err != nil {
		t.Fatal(err)
	}
	for i, o := range []queue.Outcome{
		queue.Completed(jobs[0], nil), // plain: finishCompletedSQL
		{ID: jobs[1].ID, Token: jobs[1].Token, State: queue.StateFailed, Error: "boom"},
	} {
		if n, err := a.Finish(ctx, "w", []queue.Outcome{o}); err != nil || n != 1 {
			t.Fatalf("outcome %d: Finish applied %d, err %v", i, n, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		note, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("outcome %d (%s): no wake-up of the limited queue: %v", i, o.State, err)
		}
		if note.Payload != "roomy" {
			t.Fatalf("outcome %d: woke %q, want roomy", i, note.Payload)
		}
	}
}
