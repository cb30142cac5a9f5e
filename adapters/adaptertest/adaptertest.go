// Package adaptertest is the conformance suite every TasQ adapter passes,
// against a real server. An adapter's test calls Run with a Harness that
// makes fresh, empty adapters:
//
//	func TestConformance(t *testing.T) {
//		adaptertest.Run(t, adaptertest.Harness{New: func(t *testing.T) queue.Adapter { ... }})
//	}
//
// The suite speaks queue.Adapter and reads every optional capability from
// the adapter itself (queue.TxInserter, queue.Maintainer, queue.JobReader,
// queue.JobEditor, queue.StatsReader), so what it checks holds for every
// backend: dispatch and delay; claim (only the kinds asked for), lease expiry
// and rescue; claim tokens that fence every write of an execution that lost
// its claim, on another worker or the same one; retry with delay and failure
// after exhaustion; an unstorable outcome failing alone; batch dispatch;
// priority order where supported; the inspection the CLI needs; and a worker
// running tasks end to end.
package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Harness describes the adapter under test.
type Harness struct {
	// New returns a fresh adapter over empty storage; the harness cleans it
	// up with t.Cleanup.
	New func(t *testing.T) queue.Adapter
	// NoPriority says the backend cannot order jobs by priority within a queue.
	NoPriority bool
	// Tx, for adapters that are a queue.TxInserter, begins a transaction
	// their InsertTx accepts and returns it with its commit and rollback.
	Tx func(t *testing.T, a queue.Adapter) (tx any, commit, rollback func() error)
	// Lease is the lease used where the suite waits for one to expire.
	// Default 1s (backends with second granularity need no less).
	Lease time.Duration
}

func (h Harness) lease() time.Duration {
	if h.Lease > 0 {
		return h.Lease
	}
	return time.Second
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("adaptertest: Harness.New is required")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"DispatchAndClaim", testDispatchAndClaim},
		{"Delay", testDelay},
		{"ClaimLimitAndQueues", testClaimLimitAndQueues},
		{"LeaseExpiryAndRescue", testLeaseExpiry},
		{"ExtendLeases", testExtendLeases},
		{"RetryWithDelay", testRetryWithDelay},
		{"FailedAfterExhaustion", testFailedAfterExhaustion},
		{"CompletionGuard", testCompletionGuard},
		{"TokenFencesSameWorker", testTokenSameWorker},
		{"ClaimOnlyKinds", testClaimKinds},
		{"LostLeasesReported", testLostLeases},
		{"UnstorableOutcomeFailsAlone", testUnstorableOutcome},
		{"HandBack", testHandBack},
		{"SnoozeKeepsTheAttempt", testSnooze},
		{"BatchDispatch", testBatchDispatch},
		{"Priority", testPriority},
		{"Transactions", testTransactions},
		{"Inspection", testInspection},
		{"RetryKeepsTokenGrowing", testRetryKeepsToken},
		{"WorkerEndToEnd", testWorker},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newJob(q string) queue.NewJob {
	return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "conformance", Queue: q, Payload: []byte(`{"n":1}`),
		MaxRetries: 2, RetryDelay: time.Second}
}

// absent checks that job id does not exist (where lookups work).
func absent(t *testing.T, ctx context.Context, a queue.Adapter, id uuid.UUID, what string) {
	t.Helper()
	r, ok := a.(queue.JobReader)
	if !ok {
		return
	}
	if _, err := r.GetJob(ctx, id); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("%s: GetJob = %v, want ErrJobNotFound", what, err)
	}
}

func insert(t *testing.T, ctx context.Context, a queue.Adapter, jobs ...queue.NewJob) {
	t.Helper()
	if err := a.Insert(ctx, jobs); err != nil {
		t.Fatalf("Insert: %v", err)
	}
}

// get looks a job up, or returns nil on a backend that is no
// queue.JobReader, so callers check the row only when there is one.
func get(t *testing.T, ctx context.Context, a queue.Adapter, id uuid.UUID) *queue.JobInfo {
	t.Helper()
	r, ok := a.(queue.JobReader)
	if !ok {
		return nil
	}
	j, err := r.GetJob(ctx, id)
	if err != nil {
		t.Fatalf("GetJob(%s): %v", id, err)
	}
	return j
}

// maintain runs the backend's maintenance, where it has any.
func maintain(t *testing.T, ctx context.Context, a queue.Adapter) {
	t.Helper()
	if m, ok := a.(queue.Maintainer); ok {
		if _, _, err := m.Maintain(ctx); err != nil {
			t.Fatalf("Maintain: %v", err)
		}
	}
}

func claim(ctx context.Context, a queue.Adapter, q, worker string, n int, lease time.Duration, kinds ...string) ([]*queue.Job, error) {
	return a.Claim(ctx, queue.ClaimRequest{Queue: q, WorkerID: worker, Limit: n, Lease: lease, Kinds: kinds})
}

// claimWithin claims from q until n jobs came back or the deadline passes,
// running maintenance between tries (backends promote and rescue there).
func claimWithin(t *testing.T, ctx context.Context, a queue.Adapter, q, worker string, n int, lease, within time.Duration) []*queue.Job {
	t.Helper()
	var got []*queue.Job
	deadline := time.Now().Add(within)
	for {
		jobs, err := claim(ctx, a, q, worker, n-len(got), lease)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		got = append(got, jobs...)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("claimed %d of %d jobs from %s within %v", len(got), n, q, within)
		}
		maintain(t, ctx, a)
		time.Sleep(50 * time.Millisecond)
	}
}

func finish(t *testing.T, ctx context.Context, a queue.Adapter, worker string, o queue.Outcome) int {
	t.Helper()
	n, err := a.Finish(ctx, worker, []queue.Outcome{o})
	if err != nil {
		t.Fatalf("Finish(%+v): %v", o, err)
	}
	return n
}

// out builds an outcome for the execution c.
func out(c *queue.Job, st queue.JobState) queue.Outcome {
	return queue.Outcome{ID: c.ID, Token: c.Token, State: st}
}

func testDispatchAndClaim(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("q1")
	j.Priority, j.Timeout = 3, 5*time.Second
	insert(t, ctx, a, j)
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateAvailable || info.Kind != "conformance" || info.Queue != "q1" || info.MaxRetries != 2 ||
		info.RetryDelay != time.Second || info.Timeout != 5*time.Second || info.Attempt != 0 || info.DispatchedAt.IsZero()) {
		t.Fatalf("stored job = %+v", info)
	}
	jobs := claimWithin(t, ctx, a, "q1", "w1", 1, time.Minute, 5*time.Second)
	c := jobs[0]
	if c.ID != j.ID || c.Attempt != 1 || !strings.Contains(strings.ReplaceAll(string(c.Payload), " ", ""), `"n":1`) || c.MaxRetries != 2 ||
		c.RetryDelay != time.Second || c.Timeout != 5*time.Second || c.DispatchedAt.IsZero() {
		t.Fatalf("claimed job = %+v", c)
	}
	if more, _ := claim(ctx, a, "q1", "w2", 10, time.Minute); len(more) != 0 {
		t.Fatalf("a running job was claimed twice")
	}
	if info := get(t, ctx, a, j.ID); info != nil && info.State != queue.StateRunning {
		t.Fatalf("claimed job is %s, want running", info.State)
	}
	if n := finish(t, ctx, a, "w1", queue.Outcome{ID: j.ID, Token: c.Token, State: queue.StateCompleted, Result: []byte(`{"ok":true}`)}); n != 1 {
		t.Fatalf("Finish applied %d, want 1", n)
	}
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateCompleted || info.FinishedAt == nil || !strings.Contains(string(info.Result), "ok")) {
		t.Fatalf("completed job = %+v", info)
	}
	absent(t, ctx, a, uuid.New(), "unknown job")
}

func testDelay(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("delayed")
	j.Delay = 1500 * time.Millisecond
	start := time.Now()
	insert(t, ctx, a, j)
	if info := get(t, ctx, a, j.ID); info != nil && info.State != queue.StateScheduled {
		t.Fatalf("delayed job is %s, want scheduled", info.State)
	}
	if jobs, _ := claim(ctx, a, "delayed", "w", 10, time.Minute); len(jobs) != 0 {
		t.Fatal("a delayed job was claimed before its time")
	}
	claimWithin(t, ctx, a, "delayed", "w", 1, time.Minute, 10*time.Second)
	if el := time.Since(start); el < 1400*time.Millisecond {
		t.Errorf("delayed job claimed after %v, before its 1.5s delay", el)
	}
}

func testClaimLimitAndQueues(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	for range 5 {
		insert(t, ctx, a, newJob("a"))
	}
	insert(t, ctx, a, newJob("b"))
	jobs := claimWithin(t, ctx, a, "a", "w", 3, time.Minute, 5*time.Second)
	if len(jobs) != 3 {
		t.Fatalf("claimed %d with limit 3", len(jobs))
	}
	for _, j := range jobs {
		if j.Queue != "a" {
			t.Fatalf("claim on queue a returned a job of %s", j.Queue)
		}
	}
	rest := claimWithin(t, ctx, a, "a", "w", 2, time.Minute, 5*time.Second)
	if more, _ := claim(ctx, a, "a", "w", 10, time.Minute); len(more) != 0 || len(rest) != 2 {
		t.Fatalf("queue a gave %d + %d more jobs, want exactly 5 in all", len(rest), len(more))
	}
	if b := claimWithin(t, ctx, a, "b", "w", 1, time.Minute, 5*time.Second); b[0].Queue != "b" {
		t.Fatal("queue b's job not claimable")
	}
}

func testLeaseExpiry(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("lease")
	insert(t, ctx, a, j)
	first := claimWithin(t, ctx, a, "lease", "dead-worker", 1, h.lease(), 5*time.Second)[0]
	// The worker dies: no heartbeat, no outcome. After the lease the job is rescued.
	second := claimWithin(t, ctx, a, "lease", "live-worker", 1, time.Minute, h.lease()+15*time.Second)[0]
	if second.ID != first.ID || second.Attempt != 2 || second.Token <= first.Token {
		t.Fatalf("rescued job = %+v (first claim %+v), want the same job at attempt 2 with a larger token", second, first)
	}
	if info := get(t, ctx, a, j.ID); info != nil && (len(info.Errors) == 0 || !strings.Contains(info.LastError(), "lease expired")) {
		t.Errorf("rescued job's errors %+v, want a lease-expiry note", info.Errors)
	}
}

func testExtendLeases(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("extend")
	insert(t, ctx, a, j)
	c := claimWithin(t, ctx, a, "extend", "w", 1, h.lease(), 5*time.Second)[0]
	end := time.Now().Add(3 * h.lease())
	for time.Now().Before(end) {
		lost, err := a.ExtendLeases(ctx, "w", []queue.Lease{c.Lease()}, h.lease())
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) != 0 {
			t.Fatalf("ExtendLeases reported a held lease as lost: %+v", lost)
		}
		maintain(t, ctx, a)
		if jobs, _ := claim(ctx, a, "extend", "other", 1, time.Minute); len(jobs) != 0 {
			t.Fatal("a job whose lease was being renewed was claimed by another worker")
		}
		time.Sleep(h.lease() / 4)
	}
	if n := finish(t, ctx, a, "w", out(c, queue.StateCompleted)); n != 1 {
		t.Fatal("the renewing worker could not finish its job")
	}
}

func testRetryWithDelay(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("retry")
	insert(t, ctx, a, j)
	c := claimWithin(t, ctx, a, "retry", "w", 1, time.Minute, 5*time.Second)[0]
	start := time.Now()
	finish(t, ctx, a, "w", queue.Outcome{ID: j.ID, Token: c.Token, State: queue.StateRetryable, Error: "boom 1", Delay: 1500 * time.Millisecond})
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateRetryable || info.LastError() != "boom 1" || info.Errors[0].Attempt != 1) {
		t.Fatalf("after a failed attempt: %+v", info)
	}
	again := claimWithin(t, ctx, a, "retry", "w", 1, time.Minute, 15*time.Second)[0]
	if again.Attempt != 2 {
		t.Errorf("retry claimed at attempt %d, want 2", again.Attempt)
	}
	if el := time.Since(start); el < 1400*time.Millisecond {
		t.Errorf("retried after %v, before its 1.5s delay", el)
	}
}

func testFailedAfterExhaustion(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("fail")
	insert(t, ctx, a, j)
	for attempt := 1; attempt <= 3; attempt++ {
		c := claimWithin(t, ctx, a, "fail", "w", 1, time.Minute, 15*time.Second)[0]
		if c.Attempt != attempt {
			t.Fatalf("attempt %d claimed as %d", attempt, c.Attempt)
		}
		st := queue.StateRetryable
		if attempt == 3 {
			st = queue.StateFailed
		}
		finish(t, ctx, a, "w", queue.Outcome{ID: j.ID, Token: c.Token, State: st, Error: fmt.Sprintf("boom %d", attempt), Delay: time.Millisecond})
	}
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateFailed || len(info.Errors) != 3 || info.LastError() != "boom 3" || info.FinishedAt == nil) {
		t.Fatalf("exhausted job = %+v", info)
	}
	time.Sleep(100 * time.Millisecond)
	maintain(t, ctx, a)
	if jobs, _ := claim(ctx, a, "fail", "w", 1, time.Minute); len(jobs) != 0 {
		t.Fatal("a failed job was claimed again")
	}
}

func testCompletionGuard(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("guard")
	insert(t, ctx, a, j)
	old := claimWithin(t, ctx, a, "guard", "stale", 1, h.lease(), 5*time.Second)[0]
	newer := claimWithin(t, ctx, a, "guard", "fresh", 1, time.Minute, h.lease()+15*time.Second)[0]
	if newer.Attempt != 2 || newer.Token <= old.Token {
		t.Fatalf("reclaimed at attempt %d token %d (first token %d)", newer.Attempt, newer.Token, old.Token)
	}
	if n := finish(t, ctx, a, "stale", queue.Outcome{ID: j.ID, Token: old.Token, State: queue.StateFailed, Error: "stale"}); n != 0 {
		t.Fatal("a stale execution overwrote a newer one")
	}
	// A plain completion (no result, no error) may take a shorter path in
	// an adapter; it is guarded all the same.
	if n := finish(t, ctx, a, "stale", out(old, queue.StateCompleted)); n != 0 {
		t.Fatal("a stale execution completed a newer one")
	}
	if n := finish(t, ctx, a, "stale", out(newer, queue.StateCompleted)); n != 0 {
		t.Fatal("another worker finished the fresh worker's execution")
	}
	if n := finish(t, ctx, a, "fresh", queue.Outcome{ID: j.ID, Token: newer.Token, State: queue.StateCompleted, Result: []byte(`"fresh"`)}); n != 1 {
		t.Fatal("the fresh execution could not finish")
	}
	if n := finish(t, ctx, a, "fresh", queue.Outcome{ID: j.ID, Token: newer.Token, State: queue.StateFailed, Error: "twice"}); n != 0 {
		t.Fatal("a finished job was finished twice")
	}
	if n := finish(t, ctx, a, "fresh", out(newer, queue.StateCompleted)); n != 0 {
		t.Fatal("a finished job was completed twice")
	}
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateCompleted || !strings.Contains(string(info.Result), "fresh")) {
		t.Fatalf("guarded job = %+v", info)
	}
}

// testTokenSameWorker: one worker's own lease expires while its execution
// still runs; the worker claims the job again. The old execution must not
// finish the new one, and must not be able to renew its lease.
func testTokenSameWorker(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("same")
	insert(t, ctx, a, j)
	old := claimWithin(t, ctx, a, "same", "w", 1, h.lease(), 5*time.Second)[0]
	newer := claimWithin(t, ctx, a, "same", "w", 1, time.Minute, h.lease()+15*time.Second)[0]
	if newer.ID != old.ID || newer.Token <= old.Token {
		t.Fatalf("second claim %+v, first %+v: want the same job with a larger token", newer, old)
	}
	lost, err := a.ExtendLeases(ctx, "w", []queue.Lease{old.Lease(), newer.Lease()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 1 || lost[0] != old.Lease() {
		t.Errorf("ExtendLeases lost = %+v, want only the old execution %+v", lost, old.Lease())
	}
	if n := finish(t, ctx, a, "w", queue.Outcome{ID: j.ID, Token: old.Token, State: queue.StateCompleted, Result: []byte(`"old"`)}); n != 0 {
		t.Fatal("the old execution of the same worker finished the new one")
	}
	if n := finish(t, ctx, a, "w", out(old, queue.StateCompleted)); n != 0 {
		t.Fatal("the old execution of the same worker completed the new one (plain completion)")
	}
	if info := get(t, ctx, a, j.ID); info != nil && info.State != queue.StateRunning {
		t.Fatalf("after the stale outcome the job is %s, want still running", info.State)
	}
	if n := finish(t, ctx, a, "w", queue.Outcome{ID: j.ID, Token: newer.Token, State: queue.StateCompleted, Result: []byte(`"new"`)}); n != 1 {
		t.Fatal("the new execution could not finish")
	}
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateCompleted || !strings.Contains(string(info.Result), "new")) {
		t.Fatalf("job = %+v, want completed with the new result", info)
	}
}

func testClaimKinds(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	known, unknown := newJob("kinds"), newJob("kinds")
	unknown.Kind = "only-newer-workers-know-this"
	insert(t, ctx, a, unknown, known)
	got := claimWithin(t, ctx, a, "kinds", "w", 1, time.Minute, 5*time.Second)
	// claimWithin took one of any kind; hand it back and claim by kind.
	finish(t, ctx, a, "w", out(got[0], queue.StateAvailable))
	deadline := time.Now().Add(10 * time.Second)
	for {
		jobs, err := claim(ctx, a, "kinds", "old-worker", 10, time.Minute, "conformance")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range jobs {
			if c.Kind != "conformance" {
				t.Fatalf("a claim for kinds [conformance] returned a job of kind %q", c.Kind)
			}
			finish(t, ctx, a, "old-worker", out(c, queue.StateCompleted))
			if info := get(t, ctx, a, unknown.ID); info != nil && info.State != queue.StateAvailable {
				t.Fatalf("the job of an unknown kind is %s, want available (waiting for a worker that knows it)", info.State)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a claim restricted to kind conformance found nothing")
		}
		maintain(t, ctx, a)
		time.Sleep(50 * time.Millisecond)
	}
}

func testLostLeases(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("lost")
	insert(t, ctx, a, j)
	c := claimWithin(t, ctx, a, "lost", "w", 1, time.Minute, 5*time.Second)[0]
	finish(t, ctx, a, "w", out(c, queue.StateCompleted))
	lost, err := a.ExtendLeases(ctx, "w", []queue.Lease{c.Lease()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 1 || lost[0] != c.Lease() {
		t.Errorf("renewing the lease of a finished job: lost = %+v, want %+v", lost, c.Lease())
	}
}

// testUnstorableOutcome: an outcome the backend may refuse (a result with a
// \u0000 escape, error text with a NUL byte and invalid UTF-8) is written in
// one batch with a healthy one. The healthy one must apply, and the job of
// the bad one must not stay running.
func testUnstorableOutcome(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	good, bad, badErr := newJob("poison"), newJob("poison"), newJob("poison")
	insert(t, ctx, a, good, bad, badErr)
	jobs := claimWithin(t, ctx, a, "poison", "w", 3, time.Minute, 5*time.Second)
	byID := map[uuid.UUID]*queue.Job{}
	for _, c := range jobs {
		byID[c.ID] = c
	}
	outs := []queue.Outcome{
		{ID: bad.ID, Token: byID[bad.ID].Token, State: queue.StateCompleted, Result: []byte(`{"s":"a\u0000b"}`)},
		{ID: badErr.ID, Token: byID[badErr.ID].Token, State: queue.StateFailed, Error: "nul \x00 and bad utf8 \xff\xfe"},
		{ID: good.ID, Token: byID[good.ID].Token, State: queue.StateCompleted, Result: []byte(`{"ok":true}`)},
	}
	n, err := a.Finish(ctx, "w", outs)
	if err != nil {
		t.Fatalf("Finish with one unstorable outcome failed the whole batch: %v", err)
	}
	if n != 3 {
		t.Errorf("Finish applied %d of 3 (the unstorable ones are stored as failed)", n)
	}
	if info := get(t, ctx, a, good.ID); info != nil && info.State != queue.StateCompleted {
		t.Errorf("the healthy neighbour is %s, want completed", info.State)
	}
	for _, id := range []uuid.UUID{bad.ID, badErr.ID} {
		if info := get(t, ctx, a, id); info != nil && info.State != queue.StateCompleted && info.State != queue.StateFailed {
			t.Errorf("job with an unstorable outcome is %s, want completed or failed (with the reason)", info.State)
		}
	}
}

func testHandBack(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("handback")
	insert(t, ctx, a, j)
	c := claimWithin(t, ctx, a, "handback", "w", 1, time.Minute, 5*time.Second)[0]
	finish(t, ctx, a, "w", out(c, queue.StateAvailable))
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateAvailable || info.Attempt != 0) {
		t.Fatalf("handed-back job = state %s attempt %d, want available 0", info.State, info.Attempt)
	}
	if again := claimWithin(t, ctx, a, "handback", "w2", 1, time.Minute, 5*time.Second)[0]; again.Attempt != 1 || again.Token <= c.Token {
		t.Fatalf("handed-back job reclaimed at attempt %d token %d (was %d), want attempt 1 (the handed-back attempt does not count) and a larger token", again.Attempt, again.Token, c.Token)
	}
}

// testSnooze: the outcome a worker writes when Handle returns queue.Snooze
// (a hand-back scheduled later) spends no attempt and adds no error: a job
// without retries snoozes twice, waits out each delay, and still completes
// on its first counted attempt.
func testSnooze(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	j := newJob("snooze")
	j.MaxRetries = 0
	insert(t, ctx, a, j)
	var token int64
	var snoozedAt time.Time
	for i := range 3 {
		c := claimWithin(t, ctx, a, "snooze", "w", 1, time.Minute, 15*time.Second)[0]
		if c.ID != j.ID || c.Attempt != 1 || c.Token <= token {
			t.Fatalf("claim %d: job %s at attempt %d token %d (previous %d); want attempt 1 every time (a snooze does not count) and a larger token", i+1, c.ID, c.Attempt, c.Token, token)
		}
		if i > 0 && time.Since(snoozedAt) < 900*time.Millisecond {
			t.Fatalf("claim %d came %v after a 1s snooze", i+1, time.Since(snoozedAt))
		}
		token = c.Token
		if i == 2 {
			finish(t, ctx, a, "w", out(c, queue.StateCompleted))
			break
		}
		o := queue.NextOutcome(c, nil, fmt.Errorf("partner busy: %w", queue.Snooze(time.Second)), nil)
		if o.State != queue.StateScheduled || o.Counts() || o.Error != "" {
			t.Fatalf("the rules made %+v of a snooze, want a scheduled hand-back", o)
		}
		snoozedAt = time.Now()
		if n := finish(t, ctx, a, "w", o); n != 1 {
			t.Fatalf("snooze %d: Finish applied %d, want 1", i+1, n)
		}
		if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateScheduled || info.Attempt != 0 || len(info.Errors) != 0 || info.FinishedAt != nil) {
			t.Fatalf("snoozed job = state %s attempt %d errors %v; want scheduled, attempt 0, no errors", info.State, info.Attempt, info.Errors)
		}
		maintain(t, ctx, a)
		if early, err := claim(ctx, a, "snooze", "w", 10, time.Minute); err != nil || len(early) != 0 {
			t.Fatalf("snooze %d: claim at once = %d jobs, %v; want none before the delay", i+1, len(early), err)
		}
	}
	if info := get(t, ctx, a, j.ID); info != nil && (info.State != queue.StateCompleted || info.Attempt != 1 || len(info.Errors) != 0) {
		t.Fatalf("job after two snoozes = state %s attempt %d errors %v; want completed at attempt 1, no errors", info.State, info.Attempt, info.Errors)
	}
}

func testBatchDispatch(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	jobs := make([]queue.NewJob, 100)
	for i := range jobs {
		jobs[i] = newJob("batch")
	}
	insert(t, ctx, a, jobs...)
	// Every job of the batch is stored: claims find all 100. The lease is
	// short so that jobs a claim took but could not return (SQS: a receive
	// whose response was lost on a loaded machine hides its messages for
	// the lease) come back within the wait; a job claimed twice counts once.
	want := map[uuid.UUID]bool{}
	for _, j := range jobs {
		want[j.ID] = true
	}
	seen := map[uuid.UUID]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < len(jobs) {
		got, err := claim(ctx, a, "batch", "w", len(jobs)-len(seen), 3*time.Second)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		for _, j := range got {
			if !want[j.ID] {
				t.Fatalf("claimed job %s, which the batch did not hold", j.ID)
			}
			seen[j.ID] = true
		}
		if len(seen) < len(jobs) {
			if time.Now().After(deadline) {
				t.Fatalf("claimed %d distinct of 100 batch jobs within 30s", len(seen))
			}
			maintain(t, ctx, a)
			time.Sleep(50 * time.Millisecond)
		}
	}
	bad := []queue.NewJob{newJob("batch"), newJob("")}
	if err := a.Insert(ctx, bad); err == nil {
		t.Fatal("a batch with an empty queue name was accepted")
	}
	absent(t, ctx, a, bad[0].ID, "part of a rejected batch")
}

func testPriority(t *testing.T, h Harness) {
	if h.NoPriority {
		t.Skip("the backend does not order by priority")
	}
	ctx, a := ctxFor(t), h.New(t)
	low, high := newJob("prio"), newJob("prio")
	high.Priority = 10
	insert(t, ctx, a, low)
	insert(t, ctx, a, high)
	first := claimWithin(t, ctx, a, "prio", "w", 1, time.Minute, 5*time.Second)[0]
	if first.ID != high.ID {
		t.Fatal("the higher-priority job was not claimed first")
	}
}

func testTransactions(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	ti, ok := a.(queue.TxInserter)
	if !ok {
		if h.Tx != nil {
			t.Fatal("the harness makes transactions but the adapter is no queue.TxInserter")
		}
		client, err := queue.NewClient(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.DispatchTx(ctx, struct{}{}, &conformanceTask{}); !errors.Is(err, queue.ErrTxUnsupported) {
			t.Fatalf("DispatchTx on a backend without transactions: %v, want ErrTxUnsupported", err)
		}
		return
	}
	if h.Tx == nil {
		t.Fatal("the adapter is a queue.TxInserter; give the harness a Tx function to test it")
	}
	rolled, committed := newJob("tx"), newJob("tx")
	tx, _, rollback := h.Tx(t, a)
	if err := ti.InsertTx(ctx, tx, []queue.NewJob{rolled}); err != nil {
		t.Fatal(err)
	}
	if err := rollback(); err != nil {
		t.Fatal(err)
	}
	tx, commit, _ := h.Tx(t, a)
	if err := ti.InsertTx(ctx, tx, []queue.NewJob{committed}); err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	absent(t, ctx, a, rolled.ID, "rolled-back job")
	claimWithin(t, ctx, a, "tx", "w", 1, time.Minute, 5*time.Second)
	if more, _ := claim(ctx, a, "tx", "w", 10, time.Minute); len(more) != 0 {
		t.Error("the rolled-back job was claimable")
	}
	if err := ti.InsertTx(ctx, "not a transaction", []queue.NewJob{newJob("tx")}); !errors.Is(err, queue.ErrTxUnsupported) {
		t.Errorf("InsertTx(string) = %v, want ErrTxUnsupported", err)
	}
}

func testInspection(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	done, later := newJob("inspect"), newJob("inspect")
	later.Delay = time.Hour
	later.Kind = "other"
	insert(t, ctx, a, done, later)
	c := claimWithin(t, ctx, a, "inspect", "w", 1, time.Minute, 5*time.Second)[0]
	o := out(c, queue.StateFailed)
	o.Error = "dead letter"
	finish(t, ctx, a, "w", o)

	if r, ok := a.(queue.JobReader); ok {
		list, err := r.ListJobs(ctx, queue.ListFilter{State: queue.StateFailed})
		if err != nil || len(list) != 1 || list[0].ID != done.ID || list[0].LastError() != "dead letter" {
			t.Errorf("ListJobs(failed) = %+v, %v", list, err)
		}
		list, err = r.ListJobs(ctx, queue.ListFilter{Kind: "other"})
		if err != nil || len(list) != 1 || list[0].ID != later.ID {
			t.Errorf("ListJobs(kind=other) = %+v, %v", list, err)
		}
	}
	if sr, ok := a.(queue.StatsReader); ok {
		stats, err := sr.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[queue.JobState]int64{}
		for _, s := range stats {
			if s.Queue == "inspect" {
				counts[s.State] += s.Count
			}
		}
		if counts[queue.StateFailed] != 1 || counts[queue.StateScheduled] != 1 {
			t.Errorf("Stats = %+v, want 1 failed and 1 scheduled on inspect", stats)
		}
	}
	e, ok := a.(queue.JobEditor)
	if !ok {
		return
	}
	if err := e.RetryJob(ctx, done.ID); err != nil {
		t.Fatal(err)
	}
	again := claimWithin(t, ctx, a, "inspect", "w", 1, time.Minute, 10*time.Second)[0]
	if again.ID != done.ID || again.Attempt != 1 || again.Token <= c.Token {
		t.Errorf("retried dead letter claimed as %+v, want attempt 1 (fresh budget) and a token above %d", again, c.Token)
	}
	finish(t, ctx, a, "w", out(again, queue.StateCompleted))
	if err := e.RetryJob(ctx, done.ID); !errors.Is(err, queue.ErrJobState) {
		t.Errorf("RetryJob(completed) = %v, want ErrJobState", err)
	}
	if err := e.CancelJob(ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	if info := get(t, ctx, a, later.ID); info != nil && info.State != queue.StateCancelled {
		t.Errorf("cancelled job is %s", info.State)
	}
	if err := e.CancelJob(ctx, later.ID); !errors.Is(err, queue.ErrJobState) {
		t.Errorf("CancelJob twice = %v, want ErrJobState", err)
	}
	if err := e.DeleteJob(ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	absent(t, ctx, a, later.ID, "deleted job")
}

// testRetryKeepsToken: an operator cancels a running job and retries it while
// the cancelled execution still runs. The retry resets the retry budget but
// not the token, so the cancelled execution cannot finish the new attempt.
func testRetryKeepsToken(t *testing.T, h Harness) {
	e, ok := h.New(t).(queue.JobEditor)
	if !ok {
		t.Skip("the backend is no queue.JobEditor")
	}
	ctx, a := ctxFor(t), e.(queue.Adapter)
	j := newJob("cancelretry")
	insert(t, ctx, a, j)
	first := claimWithin(t, ctx, a, "cancelretry", "w", 1, time.Minute, 5*time.Second)[0]
	if err := e.CancelJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.RetryJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	second := claimWithin(t, ctx, a, "cancelretry", "w", 1, time.Minute, 10*time.Second)[0]
	if second.Attempt != 1 || second.Token <= first.Token {
		t.Fatalf("after retry: attempt %d token %d (first token %d); want attempt 1 and a larger token", second.Attempt, second.Token, first.Token)
	}
	if n := finish(t, ctx, a, "w", queue.Outcome{ID: j.ID, Token: first.Token, State: queue.StateCompleted, Result: []byte(`"cancelled execution"`)}); n != 0 {
		t.Fatal("the cancelled execution finished the retried attempt")
	}
	if n := finish(t, ctx, a, "w", queue.Outcome{ID: j.ID, Token: second.Token, State: queue.StateCompleted, Result: []byte(`"retry"`)}); n != 1 {
		t.Fatal("the retried execution could not finish")
	}
	if info := get(t, ctx, a, j.ID); info != nil && !strings.Contains(string(info.Result), "retry") {
		t.Errorf("result %s, want the retried execution's", info.Result)
	}
}

// conformanceTask is what the end-to-end test runs.
type conformanceTask struct {
	N    int
	Fail bool
}

func (t *conformanceTask) Handle(ctx context.Context) (int, error) {
	if t.Fail {
		return 0, queue.Permanent(errors.New("asked to fail"))
	}
	return t.N * 2, nil
}

func (*conformanceTask) Kind() string { return "adaptertest.conformanceTask" }

func testWorker(t *testing.T, h Harness) {
	ctx, a := ctxFor(t), h.New(t)
	client, err := queue.NewClient(a)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for i := range 20 {
		id, err := client.Dispatch(ctx, &conformanceTask{N: i})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	bad, err := client.Dispatch(ctx, &conformanceTask{Fail: true})
	if err != nil {
		t.Fatal(err)
	}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &conformanceTask{})
	w, err := worker.New(a, reg, worker.Config{
		Concurrency: 4, PollInterval: 100 * time.Millisecond, MaintenanceInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for st := w.Stats(); st.Completed < 20 || st.Failed < 1; st = w.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("worker stats after 30s: %+v; want 20 completed and 1 failed", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := w.Stats(); st.Completed != 20 || st.Failed != 1 || st.Retried != 0 {
		t.Errorf("worker stats %+v; want exactly 20 completed, 1 failed at once (Permanent), none retried", st)
	}
	if _, ok := a.(queue.JobReader); !ok {
		return
	}
	for _, id := range append(ids, bad) {
		want := queue.StateCompleted
		if id == bad {
			want = queue.StateFailed
		}
		for {
			info := get(t, ctx, a, id)
			if info.State == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s is %s after 30s, want %s (errors %+v)", id, info.State, want, info.Errors)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if j := get(t, ctx, a, ids[7]); !strings.Contains(string(j.Result), "14") {
		t.Errorf("result of job 7 = %s, want 14", j.Result)
	}
}
