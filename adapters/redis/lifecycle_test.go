package redis_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/queue"
)

// hget reads one field of a job hash.
func hget(t *testing.T, c *goredis.Client, a *redis.Adapter, id uuid.UUID, field string) string {
	t.Helper()
	v, err := c.HGet(ctxFor(t), a.Prefix()+"job:"+id.String(), field).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		t.Fatal(err)
	}
	return v
}

// rescueWithin runs maintenance until it has rescued n jobs.
func rescueWithin(t *testing.T, a *redis.Adapter, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	got := 0
	for {
		_, rescued, err := a.Maintain(ctxFor(t))
		if err != nil {
			t.Fatalf("Maintain: %v", err)
		}
		if got += rescued; got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Maintain rescued %d of %d jobs within %v", got, n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClaimReturnsUnreadableJobsAsInvalid corrupts job hashes by hand next
// to good ones: the claim must still succeed, hand the unreadable jobs back
// with Job.Invalid saying which field is wrong, and the good ones as usual;
// the worker can then fail the invalid ones through the completion guard.
func TestClaimReturnsUnreadableJobsAsInvalid(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	good1, badAttempt, badDispatched, badToken, badPriority, notAHash, good2 :=
		newJob("corrupt"), newJob("corrupt"), newJob("corrupt"), newJob("corrupt"), newJob("corrupt"), newJob("corrupt"), newJob("corrupt")
	mustInsert(t, a, good1, badAttempt, badDispatched, badToken, badPriority, notAHash, good2)
	key := func(id uuid.UUID) string { return a.Prefix() + "job:" + id.String() }
	for _, e := range []struct {
		id           uuid.UUID
		field, value string
	}{
		{badAttempt.ID, "attempt", "abc"},
		{badDispatched.ID, "dispatched_at_us", "garbage"},
		{badToken.ID, "token", "xyz"},
		{badPriority.ID, "priority", "1e3"},
	} {
		if err := c.HSet(ctx, key(e.id), e.field, e.value).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A key that is not a hash at all: the claim drops its entry and goes on.
	if err := c.Del(ctx, key(notAHash.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, key(notAHash.ID), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}

	js, err := claim(ctx, a, "corrupt", "w", 10)
	if err != nil {
		t.Fatalf("Claim with corrupted jobs in line: %v", err)
	}
	byID := map[uuid.UUID]*queue.Job{}
	for _, j := range js {
		byID[j.ID] = j
	}
	if len(js) != 6 || byID[notAHash.ID] != nil {
		t.Fatalf("claimed %d jobs (%v); want the 6 hashes, not the string key", len(js), byID)
	}
	for _, id := range []uuid.UUID{good1.ID, good2.ID} {
		if j := byID[id]; j.Invalid != nil || j.Attempt != 1 || j.Token != 1 || j.Kind != "k" || j.MaxRetries != 3 || j.DispatchedAt.IsZero() {
			t.Errorf("good job = %+v; want a valid job at attempt 1, token 1", j)
		}
	}
	for id, want := range map[uuid.UUID]string{
		badAttempt.ID:    `attempt "abc"`,
		badDispatched.ID: `dispatched_at_us "garbage"`,
		badToken.ID:      `token "xyz" was not an integer`,
		badPriority.ID:   `priority "1e3"`,
	} {
		j := byID[id]
		if j == nil || !errors.Is(j.Invalid, redis.ErrMalformedJob) || !strings.Contains(j.Invalid.Error(), want) || !strings.Contains(j.Invalid.Error(), id.String()) {
			t.Errorf("job %s: Invalid = %v; want ErrMalformedJob naming the job and %s", id, j.Invalid, want)
		}
		if st := hget(t, c, a, id, "state"); st != "running" {
			t.Errorf("invalid job %s is %s; want running (claimed, for the worker to fail)", id, st)
		}
	}
	if j := byID[badAttempt.ID]; hget(t, c, a, j.ID, "attempt") != "abc" {
		t.Errorf("the unreadable attempt field was rewritten to %q", hget(t, c, a, j.ID, "attempt"))
	}
	// The replaced token is larger than any counter value and stored.
	if j := byID[badToken.ID]; j.Token < 1e15 || hget(t, c, a, j.ID, "token") != strconv.FormatInt(j.Token, 10) {
		t.Errorf("job with an unreadable token got token %d, stored %q", j.Token, hget(t, c, a, j.ID, "token"))
	}

	// The worker completes the good ones and fails the invalid ones with the reason.
	var outs []queue.Outcome
	for _, j := range js {
		if j.Invalid != nil {
			outs = append(outs, queue.Failed(j, j.Invalid))
		} else {
			outs = append(outs, queue.Completed(j, []byte(`true`)))
		}
	}
	if n, err := a.Finish(ctx, "w", outs); err != nil || n != 6 {
		t.Fatalf("Finish = %d, %v; want 6 applied", n, err)
	}
	for _, j := range js {
		want := "completed"
		if j.Invalid != nil {
			want = "failed"
		}
		if st := hget(t, c, a, j.ID, "state"); st != want {
			t.Errorf("job %s is %s; want %s", j.ID, st, want)
		}
	}
	if errs := hget(t, c, a, badAttempt.ID, "errors"); !strings.Contains(errs, `"attempt":0`) || !strings.Contains(errs, `attempt \"abc\"`) {
		t.Errorf("errors of the job with an unreadable attempt = %s; want an entry at attempt 0 with the reason", errs)
	}
	if _, err := a.GetJob(ctx, badAttempt.ID); !errors.Is(err, redis.ErrMalformedJob) {
		t.Errorf("GetJob of a corrupted job = %v; want ErrMalformedJob", err)
	}
	if info, err := a.GetJob(ctx, good1.ID); err != nil || info.State != queue.StateCompleted {
		t.Errorf("GetJob of a good neighbour = %+v, %v", info, err)
	}
}

// TestMaintainRescuesUnreadableJob: a claimed job with an unreadable attempt
// whose worker died must not stop maintenance; it is rescued, claimed again
// (still invalid) and can be failed.
func TestMaintainRescuesUnreadableJob(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	j, other := newJob("rescue"), newJob("rescue")
	mustInsert(t, a, j, other)
	if err := c.HSet(ctx, a.Prefix()+"job:"+j.ID.String(), "attempt", "abc", "priority", "", "run_at_us", "?").Err(); err != nil {
		t.Fatal(err)
	}
	js, err := a.Claim(ctx, queue.ClaimRequest{Queue: "rescue", WorkerID: "dead", Limit: 2, Lease: 100 * time.Millisecond})
	if err != nil || len(js) != 2 {
		t.Fatalf("Claim = %v, %v", js, err)
	}
	rescueWithin(t, a, 2, 10*time.Second)
	again, err := claim(ctx, a, "rescue", "w", 2)
	if err != nil || len(again) != 2 {
		t.Fatalf("Claim after the rescue = %v, %v", again, err)
	}
	for _, g := range again {
		if (g.ID == j.ID) != (g.Invalid != nil) {
			t.Errorf("job %s after rescue: Invalid = %v", g.ID, g.Invalid)
		}
		if g.Token != 2 {
			t.Errorf("job %s claimed again with token %d; want 2", g.ID, g.Token)
		}
		if g.ID == other.ID && g.Attempt != 2 {
			t.Errorf("the good job was claimed again at attempt %d; want 2", g.Attempt)
		}
	}
	errs := hget(t, c, a, j.ID, "errors")
	if !strings.Contains(errs, "lease expired: worker dead") {
		t.Errorf("errors after the rescue = %s", errs)
	}
}

// TestClaimKinds: a claim for some kinds skips the others without removing
// them, and inspects a bounded number of entries (limit*4+100) per call.
func TestClaimKinds(t *testing.T) {
	ctx := ctxFor(t)
	a, _ := newAdapter(t)
	var others []queue.NewJob
	for range 150 {
		o := newJob("kinds")
		o.Kind, o.Priority = "other", 5 // ahead in line
		others = append(others, o)
	}
	mustInsert(t, a, others...)
	mine := newJob("kinds") // kind "k", behind the 150
	mustInsert(t, a, mine)

	// Limit 1 inspects at most 104 entries: the job of kind k is too far back.
	if js, err := claim(ctx, a, "kinds", "w", 1, "k"); err != nil || len(js) != 0 {
		t.Fatalf("Claim(limit 1, kinds [k]) = %v, %v; want nothing within its bound of 104 entries", js, err)
	}
	// Limit 20 inspects up to 180.
	js, err := claim(ctx, a, "kinds", "w", 20, "x", "k")
	if err != nil || len(js) != 1 || js[0].ID != mine.ID {
		t.Fatalf("Claim(limit 20, kinds [x k]) = %v, %v; want the one job of kind k", js, err)
	}
	// Every skipped job is still available, in order, for the workers that know it.
	js, err = claim(ctx, a, "kinds", "w2", 200, "other")
	if err != nil || len(js) != 150 {
		t.Fatalf("Claim(kinds [other]) = %d jobs, %v; want all 150 skipped ones", len(js), err)
	}
	for i, j := range js {
		if j.ID != others[i].ID {
			t.Fatalf("job %d of kind other is %s; want %s (oldest first)", i, j.ID, others[i].ID)
		}
	}
}

// TestFinishRefusedOutcomeFailsAlone: an outcome the script cannot apply
// (here: a retry, while the delayed set's key was overwritten with a
// string) or that fails its checks is stored as a failure with the reason;
// the others of the batch apply. When not even the failure can be stored
// (the job's key is no hash), Finish says so, and still applies the rest.
func TestFinishRefusedOutcomeFailsAlone(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	retried, done, bogus, broken, last := newJob("refuse"), newJob("refuse"), newJob("refuse"), newJob("refuse"), newJob("refuse")
	mustInsert(t, a, retried, done, bogus, broken, last)
	js, err := claim(ctx, a, "refuse", "w", 5)
	if err != nil || len(js) != 5 {
		t.Fatalf("Claim = %v, %v", js, err)
	}
	by := map[uuid.UUID]*queue.Job{}
	for _, j := range js {
		by[j.ID] = j
	}
	if err := c.Set(ctx, a.Prefix()+"delayed", "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := a.Finish(ctx, "w", []queue.Outcome{
		queue.Retry(by[retried.ID], errors.New("try again")),
		{ID: bogus.ID, Token: by[bogus.ID].Token, State: queue.StateRunning},
		queue.Completed(by[done.ID], []byte(`"ok"`)),
	})
	if err != nil || n != 3 {
		t.Fatalf("Finish = %d, %v; want 3 applied, the refused ones as failures", n, err)
	}
	for id, want := range map[uuid.UUID]string{retried.ID: "failed", bogus.ID: "failed", done.ID: "completed"} {
		if st := hget(t, c, a, id, "state"); st != want {
			t.Errorf("job %s is %s; want %s", id, st, want)
		}
	}
	if errs := hget(t, c, a, retried.ID, "errors"); !strings.Contains(errs, "retryable outcome of this attempt could not be stored") ||
		!strings.Contains(errs, "WRONGTYPE") || !strings.Contains(errs, "try again") {
		t.Errorf("errors of the refused retry = %s; want the reason and the original error", errs)
	}
	if errs := hget(t, c, a, bogus.ID, "errors"); !strings.Contains(errs, "no execution can end in") {
		t.Errorf("errors of the outcome with state running = %s; want the reason", errs)
	}

	brokenKey := a.Prefix() + "job:" + broken.ID.String()
	if err := c.Del(ctx, brokenKey).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, brokenKey, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	n, err = a.Finish(ctx, "w", []queue.Outcome{
		queue.Completed(by[broken.ID], nil),
		queue.Completed(by[last.ID], nil),
	})
	if n != 1 || err == nil || !strings.Contains(err.Error(), broken.ID.String()) || !strings.Contains(err.Error(), "not even as a failure") {
		t.Errorf("Finish with a job whose key is no hash = %d, %v; want 1 applied and an error naming the job", n, err)
	}
	if st := hget(t, c, a, last.ID, "state"); st != "completed" {
		t.Errorf("the job after the broken one is %s; want completed", st)
	}
}

// TestTokenNeverResets follows one job's token field through a claim, a
// hand-back, a rescue, a failure and an operator's retry: every claim adds
// one, and nothing else changes it. Stale leases are reported lost.
func TestTokenNeverResets(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	j := newJob("token")
	mustInsert(t, a, j)
	token := func() string { return hget(t, c, a, j.ID, "token") }
	if token() != "0" {
		t.Fatalf("a new job has token %q; want 0", token())
	}
	claimOne := func(worker string, lease time.Duration) *queue.Job {
		t.Helper()
		js, err := a.Claim(ctx, queue.ClaimRequest{Queue: "token", WorkerID: worker, Limit: 1, Lease: lease})
		if err != nil || len(js) != 1 {
			t.Fatalf("Claim = %v, %v", js, err)
		}
		return js[0]
	}

	first := claimOne("w", time.Minute)
	if first.Token != 1 || token() != "1" {
		t.Fatalf("first claim: token %d, stored %s; want 1", first.Token, token())
	}
	if n, err := a.Finish(ctx, "w", []queue.Outcome{queue.HandBack(first, 0)}); err != nil || n != 1 {
		t.Fatalf("hand-back: %d, %v", n, err)
	}
	if token() != "1" || hget(t, c, a, j.ID, "attempt") != "0" {
		t.Errorf("after the hand-back: token %s attempt %s; want 1 and 0", token(), hget(t, c, a, j.ID, "attempt"))
	}

	second := claimOne("w", 100*time.Millisecond)
	if second.Token != 2 || second.Attempt != 1 {
		t.Fatalf("second claim: token %d attempt %d; want 2 and 1", second.Token, second.Attempt)
	}
	rescueWithin(t, a, 1, 10*time.Second)
	if token() != "2" {
		t.Errorf("after the rescue: token %s; want 2", token())
	}
	info, err := a.GetJob(ctx, j.ID)
	if err != nil || info.LastError() != queue.LeaseExpiredText("w") {
		t.Errorf("after the rescue: last error %q (%v); want %q", info.LastError(), err, queue.LeaseExpiredText("w"))
	}

	third := claimOne("w", time.Minute)
	if third.Token != 3 || third.Attempt != 2 {
		t.Fatalf("third claim: token %d attempt %d; want 3 and 2", third.Token, third.Attempt)
	}
	lost, err := a.ExtendLeases(ctx, "w", []queue.Lease{first.Lease(), third.Lease(), second.Lease()}, time.Minute)
	if err != nil || len(lost) != 2 || lost[0] != first.Lease() || lost[1] != second.Lease() {
		t.Errorf("ExtendLeases = %v, %v; want the first and second leases lost", lost, err)
	}
	if lost, err := a.ExtendLeases(ctx, "other-worker", []queue.Lease{third.Lease()}, time.Minute); err != nil || len(lost) != 1 {
		t.Errorf("ExtendLeases by another worker = %v, %v; want the lease reported lost", lost, err)
	}
	if n, err := a.Finish(ctx, "w", []queue.Outcome{queue.Failed(third, errors.New("gave up"))}); err != nil || n != 1 {
		t.Fatalf("fail: %d, %v", n, err)
	}
	if err := a.RetryJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if token() != "3" || hget(t, c, a, j.ID, "attempt") != "0" {
		t.Errorf("after RetryJob: token %s attempt %s; want 3 (kept) and 0 (fresh budget)", token(), hget(t, c, a, j.ID, "attempt"))
	}
	fourth := claimOne("w", time.Minute)
	if fourth.Token != 4 || fourth.Attempt != 1 {
		t.Fatalf("claim after RetryJob: token %d attempt %d; want 4 and 1", fourth.Token, fourth.Attempt)
	}
	if err := a.CancelJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if lost, err := a.ExtendLeases(ctx, "w", []queue.Lease{fourth.Lease()}, time.Minute); err != nil || len(lost) != 1 {
		t.Errorf("ExtendLeases of a cancelled job = %v, %v; want the lease reported lost", lost, err)
	}
	if token() != "4" {
		t.Errorf("after CancelJob: token %s; want 4", token())
	}
}

// handBackWithError claims the job of queue q and hands it back with msg in
// its error history.
func handBackWithError(t *testing.T, a *redis.Adapter, q, msg string, lease time.Duration) *queue.Job {
	t.Helper()
	ctx := ctxFor(t)
	js, err := a.Claim(ctx, queue.ClaimRequest{Queue: q, WorkerID: "w", Limit: 1, Lease: lease})
	if err != nil || len(js) != 1 {
		t.Fatalf("claim: %v %d", err, len(js))
	}
	o := queue.Outcome{ID: js[0].ID, Token: js[0].Token, State: queue.StateAvailable, Error: msg}
	if n, err := a.Finish(ctx, "w", []queue.Outcome{o}); err != nil || n != 1 {
		t.Fatalf("finish: %d %v", n, err)
	}
	return js[0]
}

// TestErrorHistoryIsCapped: the error history keeps the first entry and the
// newest queue.MaxErrorHistory-1, and counts the ones dropped. The entries
// are long and hold JSON's special characters, so that the script splits
// the stored history where a real entry ends.
func TestErrorHistoryIsCapped(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	a, _ := newAdapter(t)
	j := newJob("history")
	j.MaxRetries = 1000
	mustInsert(t, a, j)
	const attempts = 50
	for i := 1; i <= attempts; i++ {
		handBackWithError(t, a, "history", fmt.Sprintf(`failure %d "q", [b] {c} \ %s`, i, strings.Repeat("x", 4000)), time.Minute)
	}
	info, err := a.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Errors) != queue.MaxErrorHistory || info.ErrorsOmitted != attempts-queue.MaxErrorHistory {
		t.Fatalf("history of %d entries, %d omitted; want %d and %d", len(info.Errors), info.ErrorsOmitted, queue.MaxErrorHistory, attempts-queue.MaxErrorHistory)
	}
	if !strings.HasPrefix(info.Errors[0].Error, "failure 1 ") || !strings.HasPrefix(info.LastError(), fmt.Sprintf("failure %d ", attempts)) ||
		!strings.HasPrefix(info.Errors[1].Error, fmt.Sprintf("failure %d ", attempts-queue.MaxErrorHistory+2)) {
		t.Errorf("kept entries: first %.12q, second %.12q, last %.12q", info.Errors[0].Error, info.Errors[1].Error, info.LastError())
	}
	if want := fmt.Sprintf(`failure %d "q", [b] {c} \ %s`, attempts, strings.Repeat("x", 4000)); info.LastError() != want {
		t.Errorf("the last entry was changed: %.40q", info.LastError())
	}
	if info.Token != attempts {
		t.Errorf("claim token %d after %d claims", info.Token, attempts)
	}
}

// TestEveryErrorPathIsCapped: a rescue on lease expiry and a cancel by an
// operator append through the same capped helper as an outcome; a history
// edited by hand to be longer than the cap is cut back to it with every
// dropped entry counted, and one that is not a JSON array is replaced.
func TestEveryErrorPathIsCapped(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	j := newJob("paths")
	j.MaxRetries = 1000
	mustInsert(t, a, j)
	for i := 1; i <= queue.MaxErrorHistory-1; i++ {
		handBackWithError(t, a, "paths", fmt.Sprintf("failure %d", i), time.Minute)
	}
	handBackWithError(t, a, "paths", fmt.Sprintf("failure %d", queue.MaxErrorHistory), 100*time.Millisecond)
	check := func(stage string, omitted int, second, last string) {
		t.Helper()
		info, err := a.GetJob(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Errors) != queue.MaxErrorHistory || info.ErrorsOmitted != omitted {
			t.Fatalf("%s: history of %d entries, %d omitted; want %d and %d", stage, len(info.Errors), info.ErrorsOmitted, queue.MaxErrorHistory, omitted)
		}
		if info.Errors[0].Error != "failure 1" || info.Errors[1].Error != second || info.LastError() != last {
			t.Errorf("%s: first %q, second %q, last %q; want %q, %q, %q", stage, info.Errors[0].Error, info.Errors[1].Error, info.LastError(), "failure 1", second, last)
		}
	}
	check("full", 0, "failure 2", fmt.Sprintf("failure %d", queue.MaxErrorHistory))
	if f := hget(t, c, a, j.ID, "errors_omitted"); f != "" {
		t.Errorf("errors_omitted = %q before anything was dropped; want no field", f)
	}

	if _, err := a.Claim(ctx, queue.ClaimRequest{Queue: "paths", WorkerID: "w", Limit: 1, Lease: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	rescueWithin(t, a, 1, 10*time.Second)
	check("after the rescue", 1, "failure 3", queue.LeaseExpiredText("w"))

	if err := a.CancelJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	check("after the cancel", 2, "failure 4", "cancelled by operator")
	if f := hget(t, c, a, j.ID, "errors_omitted"); f != "2" {
		t.Errorf("errors_omitted field = %q; want 2", f)
	}

	// Edited by hand: 25 entries, then a cancel drops 6 (the 2nd to the 7th).
	long, bad := newJob("edited"), newJob("edited")
	mustInsert(t, a, long, bad)
	entries := make([]string, 25)
	for i := range entries {
		entries[i] = fmt.Sprintf(`{"attempt": %d, "at_us": 1700000000000000, "error": "old %d"}`, i+1, i+1)
	}
	if err := c.HSet(ctx, a.Prefix()+"job:"+long.ID.String(), "errors", " [ "+strings.Join(entries, " , ")+" ] ").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, a.Prefix()+"job:"+bad.ID.String(), "errors", `[{"error": "not closed"`).Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uuid.UUID{long.ID, bad.ID} {
		if err := a.CancelJob(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	info, err := a.GetJob(ctx, long.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Errors) != queue.MaxErrorHistory || info.ErrorsOmitted != 25+1-queue.MaxErrorHistory ||
		info.Errors[0].Error != "old 1" || info.Errors[1].Error != "old 8" || info.Errors[0].At.UnixMicro() != 1700000000000000 ||
		info.LastError() != "cancelled by operator" {
		t.Errorf("a long history after a cancel: %d entries, %d omitted, first %q, second %q, last %q",
			len(info.Errors), info.ErrorsOmitted, info.Errors[0].Error, info.Errors[1].Error, info.LastError())
	}
	info, err = a.GetJob(ctx, bad.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Errors) != 2 || info.Errors[0].Error != `unreadable errors field replaced: [{"error": "not closed"` ||
		info.LastError() != "cancelled by operator" || info.ErrorsOmitted != 0 {
		t.Errorf("an unreadable history after a cancel: %+v, %d omitted", info.Errors, info.ErrorsOmitted)
	}
}
