package sqs_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/sqs"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
)

// TestURLSecretsRedacted opens adapters with URLs that carry a secret
// access key in their user info and secrets in their query, each failing a
// different way, and checks that no error shows the secrets.
func TestURLSecretsRedacted(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pw, tok = "s3cr3t-Pa55", "t0k3n-Va1ue"
	for _, raw := range []string{
		"http://AKIDTEST:" + pw + "@" + closed + "?prefix=x-&session_token=" + tok, // unreachable
		"http://AKIDTEST:" + pw + "@[::1?secret=" + tok,                            // cannot parse
		"http://AKIDTEST:" + pw + "%zz@127.0.0.1:1?secret=" + tok,                  // cannot parse (bad escape)
		"ftp://AKIDTEST:" + pw + "@host/x?password=" + tok,                         // unknown scheme
		"AKIDTEST:" + pw + "@eu-west-1",                                            // no scheme
		"sqs://AKIDTEST:" + pw + "@eu-west-1?region=us-east-1&token=" + tok,        // two regions
		"sqs://AKIDTEST:" + pw + "@?token=" + tok,                                  // no region
		"http://AKIDTEST:" + pw + "@127.0.0.1:1?require_queues=maybe&token=" + tok,
		"sqs://:" + pw + "@eu-west-1?token=" + tok, // no access key ID
		"http://" + pw + "@" + closed,              // a lone user name
		"http://AKIDTEST:" + pw + "@?token=" + tok, // no host
	} {
		_, err := sqs.New(ctx, raw)
		if err == nil {
			t.Errorf("New(%q) succeeded", raw)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, pw) || strings.Contains(msg, tok) {
			t.Errorf("New with a secret in the URL: the error shows it: %s", msg)
		} else if !strings.Contains(msg, "tasq/sqs") {
			t.Errorf("New(%q): %v; want an error that names the adapter", raw, err)
		}
		// The driver registry's path too.
		if _, err := queue.OpenAdapter(ctx, sqs.DriverName, raw); err == nil || strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), tok) {
			t.Errorf("OpenAdapter with a secret in the URL: %v", err)
		}
	}
	// The unreachable endpoint is still named, without the secret.
	_, err = sqs.New(ctx, "http://AKIDTEST:"+pw+"@"+closed)
	if err == nil || !strings.Contains(err.Error(), closed) {
		t.Errorf("New on a closed port: %v; want the address %s named", err, closed)
	}
}

// TestCredentialsInURL opens the adapter with an access key ID and secret
// in the URL (the emulator accepts any) and uses it.
func TestCredentialsInURL(t *testing.T) {
	ctx := ctxFor(t)
	ep := testsqs.Endpoint(t)
	raw := strings.Replace(ep, "://", "://AKIDTEST:url-secret@", 1) + "?prefix=" + testsqs.Prefix(t)
	a, err := queue.OpenAdapter(ctx, sqs.DriverName, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	j := job("creds")
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: "creds", WorkerID: "w", Limit: 1, Lease: time.Minute})
	if err != nil || len(jobs) != 1 || jobs[0].ID != j.ID {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
}

// TestTokenGrowsAcrossCopies takes one job through every way the adapter
// re-sends it — retry, hand-back, expired lease, delayed hand-back, failure
// and redrive — and checks that every claim's token is larger than all
// before it, while Attempt follows the retry budget.
func TestTokenGrowsAcrossCopies(t *testing.T) {
	ctx := ctxFor(t)
	a := newAdapter(t, sqs.Options{})
	j := job("tokens")
	j.RetryDelay = time.Millisecond
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	var last int64
	step := func(what string, c *queue.Job, attempt int) {
		t.Helper()
		if c.ID != j.ID || c.Attempt != attempt || c.Token <= last {
			t.Fatalf("%s: claimed job %s at attempt %d token %d; want %s at attempt %d with a token above %d", what, c.ID, c.Attempt, c.Token, j.ID, attempt, last)
		}
		last = c.Token
	}
	c, _ := claimOne(t, ctx, a, "tokens", "w", time.Minute, 5*time.Second)
	step("first claim", c, 1)
	finish(t, ctx, a, "w", queue.Retry(c, errors.New("boom")))
	c, _ = claimOne(t, ctx, a, "tokens", "w", time.Minute, 5*time.Second)
	step("after a retry", c, 2)
	finish(t, ctx, a, "w", queue.HandBack(c, 0))
	c, _ = claimOne(t, ctx, a, "tokens", "w", time.Second, 5*time.Second)
	step("after a hand-back", c, 2)
	expired := c // its lease runs out
	c, _ = claimOne(t, ctx, a, "tokens", "w", time.Minute, 15*time.Second)
	step("after an expired lease", c, 3)
	if n := finish(t, ctx, a, "w", queue.Completed(expired, nil)); n != 0 {
		t.Fatal("the execution whose lease expired finished the job")
	}
	finish(t, ctx, a, "w", queue.HandBack(c, 1200*time.Millisecond))
	c, _ = claimOne(t, ctx, a, "tokens", "w", time.Minute, 15*time.Second)
	step("after a delayed hand-back", c, 3)
	finish(t, ctx, a, "w", queue.Failed(c, errors.New("dead")))
	if n, err := a.RedriveFailed(ctx, "tokens", 10); err != nil || n != 1 {
		t.Fatalf("RedriveFailed = %d, %v", n, err)
	}
	c, _ = claimOne(t, ctx, a, "tokens", "w", time.Minute, 5*time.Second)
	step("after a redrive", c, 1)
}

// TestClaimKindsKeepsAttempts: workers that do not know a job's kind
// receive it again and again; it must reach the worker that knows it at
// once, at attempt 1 and with a token above every receive's, and not twice.
func TestClaimKindsKeepsAttempts(t *testing.T) {
	ctx := ctxFor(t)
	a := newAdapter(t, sqs.Options{})
	j := job("kinds")
	j.Kind = "newer"
	j.MaxRetries = 1
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		jobs, err := claim(ctx, a, "kinds", "old-worker", 10, time.Minute, "sqs-test", "other")
		if err != nil || len(jobs) != 0 {
			t.Fatalf("claim %d for other kinds = %v, %v; want nothing", i, jobs, err)
		}
	}
	var c *queue.Job
	deadline := time.Now().Add(5 * time.Second) // far less than the old workers' 1-minute leases
	for c == nil {
		jobs, err := claim(ctx, a, "kinds", "new-worker", 10, time.Minute, "newer")
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) > 1 {
			t.Fatalf("claimed %d copies of one job", len(jobs))
		}
		if len(jobs) == 1 {
			c = jobs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job put back by workers of other kinds was not claimable at once")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.ID != j.ID || c.Kind != "newer" || c.Attempt != 1 || c.Token < 6 || queue.Exhausted(c) {
		t.Fatalf("claimed %+v; want attempt 1 (receives by other kinds do not count) and a token above the 5 receives before", c)
	}
	if n := finish(t, ctx, a, "new-worker", queue.Completed(c, nil)); n != 1 {
		t.Fatal("Finish not applied")
	}
	if got := stats(t, ctx, a)["kinds"]; len(got) != 0 {
		t.Fatalf("stats after the job completed = %v; want no copies left", got)
	}
}

// TestEntryRefusedFailsAlone: SQS refuses one outcome's message (larger
// than the queue's MaximumMessageSize, a batch entry failing as the
// sender's fault). That outcome is stored as queue.FailedUnstorable, and the
// others of the same Finish are applied.
func TestEntryRefusedFailsAlone(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testsqs.Prefix(t)
	c := testsqs.Client(t)
	for name, attrs := range map[string]map[string]string{
		prefix + "small":        {string(types.QueueAttributeNameMaximumMessageSize): "1024"},
		prefix + "small_failed": nil,
	} {
		if _, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs}); err != nil {
			t.Fatal(err)
		}
	}
	a := newAdapter(t, sqs.Options{Prefix: prefix, RequireQueues: true})
	big, ok, done := job("small"), job("small"), job("small")
	if err := a.Insert(ctx, []queue.NewJob{big, ok, done}); err != nil {
		t.Fatal(err)
	}
	jobs, err := claim(ctx, a, "small", "w", 3, time.Minute)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim = %d jobs, %v", len(jobs), err)
	}
	byID := map[uuid.UUID]*queue.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	long := strings.Repeat("x", 1500) // the retry copy outgrows the 1 KiB queue
	outs := []queue.Outcome{
		{ID: big.ID, Token: byID[big.ID].Token, State: queue.StateRetryable, Error: long, Delay: time.Millisecond},
		{ID: ok.ID, Token: byID[ok.ID].Token, State: queue.StateRetryable, Error: "short", Delay: time.Millisecond},
		{ID: done.ID, Token: byID[done.ID].Token, State: queue.StateCompleted},
	}
	n, err := a.Finish(ctx, "w", outs)
	if err != nil || n != 3 {
		t.Fatalf("Finish = %d, %v; want all 3 applied, the refused one as failed", n, err)
	}
	rec := failedRecords(t, ctx, prefix+"small_failed", 1)[0]
	errs, _ := rec["errors"].([]any)
	var last string
	if len(errs) > 0 {
		last, _ = errs[len(errs)-1].(map[string]any)["error"].(string)
	}
	if rec["id"] != big.ID.String() || rec["state"] != "failed" || !strings.Contains(last, "retryable outcome of this attempt could not be stored") || !strings.Contains(last, "xxxx") {
		t.Fatalf("failed record = %v; want job %s failed with the reason and its original error text", rec, big.ID)
	}
	again, _ := claimOne(t, ctx, a, "small", "w", time.Minute, 5*time.Second)
	if again.ID != ok.ID || again.Attempt != 2 {
		t.Fatalf("claimed %s at attempt %d; want the healthy retry %s at attempt 2", again.ID, again.Attempt, ok.ID)
	}
	if more, err := claim(ctx, a, "small", "w", 10, time.Minute); err != nil || len(more) != 0 {
		t.Fatalf("more jobs in the queue: %v, %v; want none (the completed one deleted, the refused one failed)", more, err)
	}
}

// TestSendFailureFailsAlone: the call that sends one outcome's message
// fails (a dropped connection). The other outcomes of the same Finish are
// applied; the failed one is reported, keeps its claim, and a second Finish
// applies it.
func TestSendFailureFailsAlone(t *testing.T) {
	ctx := ctxFor(t)
	opts := testsqs.Options(t)
	f := &failNth{}
	opts.HTTPClient = f
	opts.RetryMaxAttempts = 1
	a, err := sqs.NewFromClient(ctx, awssqs.New(opts), sqs.Options{Prefix: testsqs.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	dead, retry, done := job("flaky"), job("flaky"), job("flaky")
	if err := a.Insert(ctx, []queue.NewJob{dead, retry, done}); err != nil {
		t.Fatal(err)
	}
	jobs, err := claim(ctx, a, "flaky", "w", 3, time.Minute)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim = %d jobs, %v", len(jobs), err)
	}
	byID := map[uuid.UUID]*queue.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	outs := []queue.Outcome{
		queue.Failed(byID[dead.ID], errors.New("dead letter")), // sent first, to the failed queue: that call fails
		queue.Retry(byID[retry.ID], errors.New("again")),
		queue.Completed(byID[done.ID], nil),
	}
	f.n.Store(f.seen.Load() + 1) // the next SendMessageBatch fails
	n, err := a.Finish(ctx, "w", outs)
	if n != 2 || err == nil || !strings.Contains(err.Error(), dead.ID.String()) || strings.Contains(err.Error(), retry.ID.String()) {
		t.Fatalf("Finish = %d, %v; want 2 applied and an error naming job %s only", n, err, dead.ID)
	}
	lost, err := a.ExtendLeases(ctx, "w", []queue.Lease{byID[dead.ID].Lease(), byID[done.ID].Lease()}, time.Minute)
	if err != nil || len(lost) != 1 || lost[0] != byID[done.ID].Lease() {
		t.Fatalf("ExtendLeases = %v, %v; want the unwritten outcome's claim held and the completed one's lost", lost, err)
	}
	n, err = a.Finish(ctx, "w", outs)
	if n != 1 || err != nil {
		t.Fatalf("second Finish = %d, %v; want the failed outcome applied now, the others stale", n, err)
	}
	if rec := failedRecords(t, ctx, a.Prefix()+"flaky_failed", 1)[0]; rec["id"] != dead.ID.String() {
		t.Fatalf("failed record = %v", rec)
	}
	again, _ := claimOne(t, ctx, a, "flaky", "w", time.Minute, 5*time.Second)
	if again.ID != retry.ID || again.Attempt != 2 {
		t.Fatalf("claimed %s at attempt %d; want the retried %s at attempt 2", again.ID, again.Attempt, retry.ID)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
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

// TestQuarantineDoesNotStopClaim: unreadable messages among good jobs,
// while their quarantine fails (the failed queue is missing and the adapter
// may not create it). The claim still returns every good job; once the
// failed queue exists, the unreadable messages are moved there.
func TestQuarantineDoesNotStopClaim(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testsqs.Prefix(t)
	c := testsqs.Client(t)
	u, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(prefix + "junk")})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	a := newAdapter(t, sqs.Options{Prefix: prefix, RequireQueues: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	var good []queue.NewJob
	for range 3 {
		good = append(good, job("junk"))
	}
	for _, body := range []string{"not a job", `{"v":1}`, `{"v":1,"id":"` + uuid.NewString() + `","kind":"k"}`} {
		if _, err := c.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: u.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Insert(ctx, good); err != nil {
		t.Fatal(err)
	}
	jobs, err := claim(ctx, a, "junk", "w", 10, time.Second)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim = %d jobs, %v; want the 3 good ones", len(jobs), err)
	}
	if !strings.Contains(logs.String(), "cannot move an unreadable message to the failed queue") {
		t.Errorf("logs do not report the failed quarantine:\n%s", logs)
	}
	for _, j := range jobs {
		finish(t, ctx, a, "w", queue.Completed(j, nil))
	}
	if _, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(prefix + "junk_failed")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if jobs, err := claim(ctx, a, "junk", "w", 10, time.Second); err != nil || len(jobs) != 0 {
			t.Fatalf("Claim = %v, %v; want no jobs", jobs, err)
		}
		if got := stats(t, ctx, a)["junk"]; got[queue.StateFailed] == 3 && got[queue.StateAvailable]+got[queue.StateRunning] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats = %v after 15s; want the 3 unreadable messages quarantined", stats(t, ctx, a)["junk"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
