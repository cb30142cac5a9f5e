package sqs_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/adaptertest"
	"github.com/tasqhq/tasq/adapters/sqs"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
)

func TestMain(m *testing.M) { os.Exit(testsqs.Main(m)) }

// newAdapter returns an adapter over this test's own queues.
func newAdapter(t *testing.T, opts sqs.Options) *sqs.Adapter {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = testsqs.Prefix(t)
	}
	a, err := sqs.NewFromClient(context.Background(), testsqs.Client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		New:        func(t *testing.T) queue.Adapter { return newAdapter(t, sqs.Options{}) },
		NoPriority: true,
	})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func job(q string) queue.NewJob {
	return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "sqs-test", Queue: q, Payload: []byte(`{"n":1}`), MaxRetries: 3, RetryDelay: time.Second}
}

// claim claims up to n jobs of q (of kinds, when given) for worker.
func claim(ctx context.Context, a *sqs.Adapter, q, worker string, n int, lease time.Duration, kinds ...string) ([]*queue.Job, error) {
	return a.Claim(ctx, queue.ClaimRequest{Queue: q, WorkerID: worker, Limit: n, Lease: lease, Kinds: kinds})
}

// claimOne claims from q until a job comes back or within passes, and
// returns it with the time it came.
func claimOne(t *testing.T, ctx context.Context, a *sqs.Adapter, q, worker string, lease, within time.Duration) (*queue.Job, time.Time) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		jobs, err := claim(ctx, a, q, worker, 1, lease)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if len(jobs) == 1 {
			return jobs[0], time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no job claimed from %s within %v", q, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func finish(t *testing.T, ctx context.Context, a *sqs.Adapter, worker string, o queue.Outcome) int {
	t.Helper()
	n, err := a.Finish(ctx, worker, []queue.Outcome{o})
	if err != nil {
		t.Fatalf("Finish(%+v): %v", o, err)
	}
	return n
}

func stats(t *testing.T, ctx context.Context, a *sqs.Adapter) map[string]map[queue.JobState]int64 {
	t.Helper()
	st, err := a.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	out := map[string]map[queue.JobState]int64{}
	for _, s := range st {
		if out[s.Queue] == nil {
			out[s.Queue] = map[queue.JobState]int64{}
		}
		out[s.Queue][s.State] += s.Count
	}
	return out
}

// TestDelayBeyondCap runs the mechanism for delays longer than SQS's
// 15-minute cap with a cap of one second: the message is sent with the cap
// and the time it may run, hidden again when received early, and replaced
// by a copy delayed by the rest. The job must neither run early nor have its
// attempts inflated by the early receives.
func TestDelayBeyondCap(t *testing.T) {
	ctx := ctxFor(t)
	a := newAdapter(t, sqs.Options{MaxDelay: time.Second})
	j := job("long")
	j.Delay = 3500 * time.Millisecond
	start := time.Now()
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	c, at := claimOne(t, ctx, a, "long", "w", time.Minute, 15*time.Second)
	if el := at.Sub(start); el < j.Delay {
		t.Fatalf("a job delayed %v beyond the cap ran after %v", j.Delay, el)
	}
	if c.ID != j.ID || c.Attempt != 1 {
		t.Fatalf("long-delayed job claimed as %+v, want attempt 1 (early receives do not count)", c)
	}

	// A retry with a delay beyond the cap takes the same way.
	retryAt := time.Now()
	if n := finish(t, ctx, a, "w", queue.Outcome{ID: j.ID, Token: c.Token, State: queue.StateRetryable, Error: "boom", Delay: 2500 * time.Millisecond}); n != 1 {
		t.Fatalf("Finish applied %d", n)
	}
	first := c
	c, at = claimOne(t, ctx, a, "long", "w", time.Minute, 15*time.Second)
	if el := at.Sub(retryAt); el < 2500*time.Millisecond {
		t.Fatalf("a retry delayed 2.5s beyond the cap ran after %v", el)
	}
	if c.Attempt != 2 || c.Token != first.Token+1 {
		t.Fatalf("retried long-delayed job claimed at attempt %d token %d, want attempt 2 token %d (early receives count neither)", c.Attempt, c.Token, first.Token+1)
	}
}

// TestLongDelayIsScheduled checks that a job delayed by hours is sent with
// SQS's maximum delay and counted as scheduled, not available.
func TestLongDelayIsScheduled(t *testing.T) {
	ctx := ctxFor(t)
	a := newAdapter(t, sqs.Options{})
	j := job("later")
	j.Delay = 3 * time.Hour
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	if jobs, err := claim(ctx, a, "later", "w", 10, time.Minute); err != nil || len(jobs) != 0 {
		t.Fatalf("Claim = %v, %v; a job 3h away was handed out", jobs, err)
	}
	if got := stats(t, ctx, a)["later"]; got[queue.StateScheduled] != 1 || got[queue.StateAvailable] != 0 {
		t.Fatalf("stats of queue later = %v, want 1 scheduled", got)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = sqs.New(ctx, "http://"+addr)
	if err == nil {
		t.Fatalf("New on a closed port succeeded")
	}
	for _, want := range []string{addr, "TASQ_SQS_ENDPOINT", "running"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	for _, bad := range []string{"", "ftp://127.0.0.1:1", "http://", "http://127.0.0.1:1?require_queues=maybe"} {
		if _, err := sqs.New(ctx, bad); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), "tasq/sqs") {
			t.Errorf("New(%q): %v; want an error that names the adapter", bad, err)
		}
	}
}

func TestNewFromURL(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testsqs.Prefix(t)
	a, err := queue.OpenAdapter(ctx, sqs.DriverName, testsqs.Endpoint(t)+"?prefix="+prefix+"&region="+testsqs.Region)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Name() != "sqs" {
		t.Errorf("Name = %q", a.Name())
	}
	j := job("url")
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	// The queue is where the prefix says, as another client sees it.
	out, err := testsqs.Client(t).GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(prefix + "url")})
	if err != nil || !strings.HasSuffix(aws.ToString(out.QueueUrl), "/"+prefix+"url") {
		t.Fatalf("GetQueueUrl(%surl) = %v, %v", prefix, out, err)
	}
	jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: "url", WorkerID: "w", Limit: 1, Lease: time.Minute})
	if err != nil || len(jobs) != 1 || jobs[0].ID != j.ID {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
}

// TestStaleReceiptHandle pins down what the completion guard rests on, on
// the emulator as on SQS: once a message was received again, DeleteMessage
// with the old receipt handle succeeds but deletes nothing, while
// ChangeMessageVisibility with it is refused. Finish therefore checks with
// ChangeMessageVisibility before it writes anything.
func TestStaleReceiptHandle(t *testing.T) {
	ctx := ctxFor(t)
	c := testsqs.Client(t)
	created, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(testsqs.Prefix(t) + "raw")})
	if err != nil {
		t.Fatal(err)
	}
	u := created.QueueUrl
	if _, err := c.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: u, MessageBody: aws.String("x")}); err != nil {
		t.Fatal(err)
	}
	receive := func(within time.Duration) string {
		deadline := time.Now().Add(within)
		for {
			out, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: u, VisibilityTimeout: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) == 1 {
				return aws.ToString(out.Messages[0].ReceiptHandle)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no message within %v", within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	old := receive(5 * time.Second)
	fresh := receive(10 * time.Second) // after the 1s visibility timeout
	if _, err := c.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{QueueUrl: u, ReceiptHandle: aws.String(fresh), VisibilityTimeout: 60}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{QueueUrl: u, ReceiptHandle: aws.String(old), VisibilityTimeout: 60}); err == nil {
		t.Fatal("ChangeMessageVisibility with a stale receipt handle succeeded")
	}
	if _, err := c.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: u, ReceiptHandle: aws.String(old)}); err != nil {
		t.Fatalf("DeleteMessage with a stale receipt handle: %v (SQS documents success)", err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: u, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	if n := attrs.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)]; n != "1" {
		t.Fatalf("after a delete with a stale handle, %s messages in flight, want 1 (not deleted)", n)
	}
}

// TestGuardAcrossProcesses runs the completion guard with two adapters, as
// two worker processes have: the first's lease runs out, the second claims
// the job, and the first's late outcome must not apply.
func TestGuardAcrossProcesses(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testsqs.Prefix(t)
	a1 := newAdapter(t, sqs.Options{Prefix: prefix})
	a2 := newAdapter(t, sqs.Options{Prefix: prefix})
	j := job("guard")
	if err := a1.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	old, _ := claimOne(t, ctx, a1, "guard", "w1", time.Second, 5*time.Second)
	c, _ := claimOne(t, ctx, a2, "guard", "w2", time.Minute, 15*time.Second)
	if c.Attempt != 2 || c.Token <= old.Token {
		t.Fatalf("reclaimed at attempt %d token %d, want attempt 2 and a token above %d", c.Attempt, c.Token, old.Token)
	}
	// a1 still knows its claim, but SQS refuses its receipt handle: the
	// lease is reported lost.
	lost, err := a1.ExtendLeases(ctx, "w1", []queue.Lease{old.Lease()}, time.Minute)
	if err != nil || len(lost) != 1 || lost[0] != old.Lease() {
		t.Fatalf("the stale process's ExtendLeases = %v, %v; want its lease %v lost", lost, err, old.Lease())
	}
	if n := finish(t, ctx, a1, "w1", queue.Outcome{ID: j.ID, Token: old.Token, State: queue.StateRetryable, Error: "late", Delay: time.Millisecond}); n != 0 {
		t.Fatal("the stale process's outcome was applied")
	}
	if n := finish(t, ctx, a2, "w2", queue.Outcome{ID: j.ID, Token: c.Token, State: queue.StateFailed, Error: "final"}); n != 1 {
		t.Fatal("the fresh process could not finish")
	}
	// The stale retry must not have left a copy behind: a copy would count
	// as scheduled (delayed) or available.
	if got := stats(t, ctx, a1)["guard"]; len(got) != 1 || got[queue.StateFailed] != 1 {
		t.Fatalf("stats of queue guard = %v, want just the one failed record", got)
	}
	// The final record keeps the history, with the lost attempt noted.
	rec := failedRecords(t, ctx, prefix+"guard_failed", 1)[0]
	if rec["state"] != "failed" || rec["id"] != j.ID.String() {
		t.Fatalf("failed record = %v", rec)
	}
	errs, _ := json.Marshal(rec["errors"])
	if !strings.Contains(string(errs), `"attempt":1,"error":"lease expired`) || !strings.Contains(string(errs), `"attempt":2,`) || !strings.Contains(string(errs), "final") || strings.Contains(string(errs), "late") {
		t.Fatalf("failed record's errors = %s; want the lease expiry of attempt 1 and attempt 2's error, not the stale one", errs)
	}
	if tb, _ := rec["token_base"].(float64); int64(tb) != c.Token {
		t.Fatalf("failed record's token base = %v, want the last claim's token %d", rec["token_base"], c.Token)
	}
}

// failedRecords receives n records from a failed queue (they stay there).
func failedRecords(t *testing.T, ctx context.Context, name string, n int) []map[string]any {
	t.Helper()
	c := testsqs.Client(t)
	u, err := c.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("failed queue %s: %v", name, err)
	}
	out, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: u.QueueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != n {
		t.Fatalf("%d records in %s, want %d", len(out.Messages), name, n)
	}
	var recs []map[string]any
	for _, m := range out.Messages {
		var r map[string]any
		if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &r); err != nil {
			t.Fatalf("failed record %q: %v", aws.ToString(m.Body), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestCapabilities checks that the adapter offers what SQS can do and
// nothing that would always fail: no transactions, lookups, edits of single
// jobs, notifications or maintenance; stats yes.
func TestCapabilities(t *testing.T) {
	var a queue.Adapter = newAdapter(t, sqs.Options{})
	if _, ok := a.(queue.StatsReader); !ok {
		t.Error("the adapter is no queue.StatsReader")
	}
	for name, ok := range map[string]bool{
		"queue.TxInserter": is[queue.TxInserter](a), "queue.JobReader": is[queue.JobReader](a),
		"queue.JobEditor": is[queue.JobEditor](a), "queue.Notifier": is[queue.Notifier](a),
		"queue.Maintainer": is[queue.Maintainer](a),
	} {
		if ok {
			t.Errorf("the adapter is a %s, which SQS cannot be", name)
		}
	}
}

func is[T any](v any) bool {
	_, ok := v.(T)
	return ok
}

func TestQueueNames(t *testing.T) {
	ctx := ctxFor(t)
	a := newAdapter(t, sqs.Options{})
	names := []string{"mail/high.prio", "x_failed", "ünïcode", "a-b_c"}
	for _, q := range names {
		if err := a.Insert(ctx, []queue.NewJob{job(q)}); err != nil {
			t.Fatalf("Insert into %q: %v", q, err)
		}
	}
	got := stats(t, ctx, a)
	for _, q := range names {
		if got[q][queue.StateAvailable] != 1 {
			t.Errorf("stats[%q] = %v, want 1 available (all stats: %v)", q, got[q], got)
		}
		c, _ := claimOne(t, ctx, a, q, "w", time.Minute, 5*time.Second)
		if c.Queue != q {
			t.Errorf("claimed job's queue = %q, want %q", c.Queue, q)
		}
	}
	long := strings.Repeat("q", 70)
	if err := a.Insert(ctx, []queue.NewJob{job(long)}); !errors.Is(err, queue.ErrInvalidConfig) || !strings.Contains(err.Error(), "80") {
		t.Errorf("Insert into a queue name too long for SQS: %v", err)
	}
}

func TestInsertValidation(t *testing.T) {
	ctx := ctxFor(t)
	a := newAdapter(t, sqs.Options{MaxMessageSize: 4096})
	big := job("v")
	big.Payload = []byte(`"` + strings.Repeat("x", 5000) + `"`)
	notJSON := job("v")
	notJSON.Payload = []byte(`{oops`)
	badChar := job("v")
	badChar.Payload = []byte("\"\uffff\"")
	for name, bad := range map[string]queue.NewJob{"oversized": big, "not JSON": notJSON, "bad character": badChar} {
		err := a.Insert(ctx, []queue.NewJob{job("v"), bad})
		if !errors.Is(err, queue.ErrInvalidConfig) {
			t.Errorf("%s payload: Insert = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := a.Insert(ctx, nil); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Errorf("empty batch: %v", err)
	}
	if got := stats(t, ctx, a); len(got) != 0 {
		t.Errorf("rejected batches left jobs behind: %v", got)
	}
}

// failNth is an HTTP client that fails the nth SendMessageBatch request
// before it reaches the server, as a dropped connection would.
type failNth struct {
	n, seen atomic.Int32
}

func (f *failNth) Do(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.SendMessageBatch" && f.seen.Add(1) == f.n.Load() {
		return nil, errors.New("connection reset (injected by the test)")
	}
	return http.DefaultClient.Do(r)
}

// TestBatchPartialFailure checks the honest report of a batch that SQS
// stored only in part: 30 jobs are three calls, and the second is lost.
func TestBatchPartialFailure(t *testing.T) {
	ctx := ctxFor(t)
	opts := testsqs.Options(t)
	f := &failNth{}
	f.n.Store(2)
	opts.HTTPClient = f
	opts.RetryMaxAttempts = 1
	a, err := sqs.NewFromClient(ctx, awssqs.New(opts), sqs.Options{Prefix: testsqs.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	jobs := make([]queue.NewJob, 30)
	for i := range jobs {
		jobs[i] = job("part")
	}
	err = a.Insert(ctx, jobs)
	var ie *sqs.InsertError
	if !errors.As(err, &ie) {
		t.Fatalf("Insert = %v, want an *InsertError", err)
	}
	ids := func(js []queue.NewJob) []uuid.UUID {
		var out []uuid.UUID
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	if !equal(ie.Sent, ids(jobs[:10])) || !equal(ie.Unknown, ids(jobs[10:20])) || !equal(ie.Unsent, ids(jobs[20:])) {
		t.Fatalf("InsertError: sent %d, unknown %d, unsent %d; want the first, second and third ten", len(ie.Sent), len(ie.Unknown), len(ie.Unsent))
	}
	if !strings.Contains(err.Error(), "atomic") {
		t.Errorf("error %q does not say that SQS batches are not atomic", err)
	}
	got, err := claim(ctx, a, "part", "w", 30, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sent := map[uuid.UUID]bool{}
	for _, id := range ie.Sent {
		sent[id] = true
	}
	for _, j := range got {
		if !sent[j.ID] {
			t.Errorf("job %s was claimed but not reported sent", j.ID)
		}
	}
	if len(got) != 10 {
		t.Errorf("claimed %d jobs, want the 10 sent", len(got))
	}
}

func equal(a, b []uuid.UUID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestUnreadableMessage checks that a message that is not a TasQ job is
// moved to the failed queue rather than blocking the queue or vanishing.
func TestUnreadableMessage(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testsqs.Prefix(t)
	a := newAdapter(t, sqs.Options{Prefix: prefix, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	good := job("mixed")
	if err := a.Insert(ctx, []queue.NewJob{good}); err != nil {
		t.Fatal(err)
	}
	c := testsqs.Client(t)
	u, err := c.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(prefix + "mixed")})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"hello, not a job", `{"v":99,"id":"from the future"}`} {
		if _, err := c.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: u.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	jobs, err := claim(ctx, a, "mixed", "w", 10, time.Minute)
	if err != nil || len(jobs) != 1 || jobs[0].ID != good.ID {
		t.Fatalf("Claim = %v, %v; want just the good job", jobs, err)
	}
	// The unreadable message is failed; the newer job is left for a newer
	// worker (in flight until its visibility timeout runs out).
	if got := stats(t, ctx, a)["mixed"]; got[queue.StateFailed] != 1 || got[queue.StateRunning] != 2 {
		t.Fatalf("stats = %v, want the unreadable message failed, the good and the newer job in flight", got)
	}
	rec := failedRecords(t, ctx, prefix+"mixed_failed", 1)[0]
	if rec["raw"] != "hello, not a job" {
		t.Fatalf("failed record = %v, want the raw message kept", rec)
	}
}

func TestRedriveFailed(t *testing.T) {
	ctx := ctxFor(t)
	a := newAdapter(t, sqs.Options{})
	j := job("dead")
	if err := a.Insert(ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	c, _ := claimOne(t, ctx, a, "dead", "w", time.Minute, 5*time.Second)
	if n := finish(t, ctx, a, "w", queue.Outcome{ID: c.ID, Token: c.Token, State: queue.StateFailed, Error: "dead letter"}); n != 1 {
		t.Fatal("Finish(failed) not applied")
	}
	if got := stats(t, ctx, a)["dead"]; got[queue.StateFailed] != 1 {
		t.Fatalf("stats = %v, want 1 failed", got)
	}
	n, err := a.RedriveFailed(ctx, "dead", 10)
	if err != nil || n != 1 {
		t.Fatalf("RedriveFailed = %d, %v; want 1", n, err)
	}
	again, _ := claimOne(t, ctx, a, "dead", "w", time.Minute, 5*time.Second)
	if again.ID != j.ID || again.Attempt != 1 || again.Token <= c.Token {
		t.Fatalf("redriven job claimed as %+v, want the same job at attempt 1 (fresh budget) with a token above %d", again, c.Token)
	}
	if got := stats(t, ctx, a)["dead"]; got[queue.StateFailed] != 0 {
		t.Fatalf("stats after redrive = %v, want no failed", got)
	}
}

func TestRequireQueues(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testsqs.Prefix(t)
	a := newAdapter(t, sqs.Options{Prefix: prefix, RequireQueues: true})
	err := a.Insert(ctx, []queue.NewJob{job("missing")})
	if err == nil || !strings.Contains(err.Error(), prefix+"missing") || !strings.Contains(err.Error(), "create it") {
		t.Fatalf("Insert into a missing queue: %v; want an error naming the SQS queue to create", err)
	}
	out, err := testsqs.Client(t).ListQueues(ctx, &awssqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix)})
	if err != nil || len(out.QueueUrls) != 0 {
		t.Fatalf("RequireQueues created queues: %v, %v", out.QueueUrls, err)
	}
	if _, err := testsqs.Client(t).CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(prefix + "missing")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Insert(ctx, []queue.NewJob{job("missing")}); err != nil {
		t.Fatalf("Insert once the queue exists: %v", err)
	}
}
