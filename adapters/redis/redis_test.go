package redis_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/adapters/adaptertest"
	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/queue"
)

func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		New: func(t *testing.T) queue.Adapter {
			// Through the URL, as the driver registry opens it.
			a, err := redis.New(context.Background(), testredis.URL()+"?key_prefix="+testredis.NewPrefix(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Close)
			return a
		},
	})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newAdapter returns an adapter on a fresh prefix and the client under it.
func newAdapter(t *testing.T) (*redis.Adapter, *goredis.Client) {
	t.Helper()
	c := testredis.NewClient(t)
	a, err := redis.NewFromClient(ctxFor(t), c, redis.Options{Prefix: testredis.NewPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, c
}

func newJob(q string) queue.NewJob {
	return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: q, Payload: []byte(`{"n":1}`), MaxRetries: 3, RetryDelay: time.Second}
}

func jobs(q string, n int) []queue.NewJob {
	out := make([]queue.NewJob, n)
	for i := range out {
		out[i] = newJob(q)
	}
	return out
}

// claim claims up to n jobs of any kind with a one-minute lease.
func claim(ctx context.Context, a *redis.Adapter, q, worker string, n int, kinds ...string) ([]*queue.Job, error) {
	return a.Claim(ctx, queue.ClaimRequest{Queue: q, WorkerID: worker, Limit: n, Lease: time.Minute, Kinds: kinds})
}

func mustInsert(t *testing.T, a *redis.Adapter, js ...queue.NewJob) {
	t.Helper()
	if err := a.Insert(ctxFor(t), js); err != nil {
		t.Fatalf("Insert: %v", err)
	}
}

// keysUnder lists the keys of an adapter's prefix.
func keysUnder(t *testing.T, c *goredis.Client, prefix string) []string {
	t.Helper()
	ks, err := c.Keys(ctxFor(t), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ks)
	return ks
}

func TestUnreachableServerAndBadURLs(t *testing.T) {
	ctx := ctxFor(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	_, err = redis.New(ctx, "redis://"+addr+"/0")
	if err == nil || !strings.Contains(err.Error(), "cannot reach Redis at "+addr) || !strings.Contains(err.Error(), redis.EnvRedisURL) {
		t.Errorf("New on a closed port: %v; want it to name %s and %s", err, addr, redis.EnvRedisURL)
	}
	a, err := queue.OpenAdapter(ctx, "redis", "redis://"+addr+"/0")
	if err == nil || a != nil {
		t.Errorf("OpenAdapter on a closed port = (%#v, %v); want a nil adapter and an error", a, err)
	}
	for _, tc := range []struct{ url, want string }{
		{"", redis.EnvRedisURL},
		{"redis://u:secretpw@127.0.0.1:1/0?bogus=1", "cannot parse Redis URL"},
		{"http://127.0.0.1:1/0", "cannot parse Redis URL"},
		{"redis://127.0.0.1:1/0?key_prefix=", "key_prefix is empty"},
		{"redis://u:secretpw@[::1/0", "cannot parse Redis URL"},
	} {
		_, err := redis.New(ctx, tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) = %v; want an error containing %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("New(%q) error shows the password: %v", tc.url, err)
		}
	}
	cluster := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{addr}})
	defer cluster.Close()
	if _, err := redis.NewFromClient(ctx, cluster, redis.Options{}); err == nil || !strings.Contains(err.Error(), "ClusterClient is not supported") {
		t.Errorf("NewFromClient(cluster) = %v; want a refusal", err)
	}
}

func TestOpenByDriverName(t *testing.T) {
	ctx := ctxFor(t)
	prefix := testredis.NewPrefix(t)
	a, err := queue.OpenAdapter(ctx, "redis", testredis.URL()+"?key_prefix="+prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Name() != "redis" || a.(*redis.Adapter).Prefix() != prefix {
		t.Errorf("opened %s with prefix %q; want redis with %q", a.Name(), a.(*redis.Adapter).Prefix(), prefix)
	}
	if _, ok := a.(queue.TxInserter); ok {
		t.Error("the Redis adapter claims to be a queue.TxInserter; Redis cannot join a SQL transaction")
	}
}

// TestInsertIsAllOrNothing checks that a batch that fails stores nothing,
// and that no reader ever sees part of a batch.
func TestInsertIsAllOrNothing(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)

	existing := newJob("atomic")
	mustInsert(t, a, existing)
	before := keysUnder(t, c, a.Prefix())

	fresh := jobs("atomic", 50)
	withDup := append(slices.Clone(fresh), existing)
	if err := a.Insert(ctx, withDup); !errors.Is(err, queue.ErrJobExists) {
		t.Fatalf("Insert with an existing ID = %v; want a refusal", err)
	}
	inBatchDup := append(slices.Clone(fresh), fresh[7])
	if err := a.Insert(ctx, inBatchDup); err == nil {
		t.Fatal("Insert with an ID twice in the batch succeeded")
	}
	bad := append(slices.Clone(fresh), queue.NewJob{ID: uuid.New(), Queue: "atomic"}) // no kind
	if err := a.Insert(ctx, bad); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Fatalf("Insert with an empty kind = %v; want ErrInvalidConfig", err)
	}
	for _, j := range fresh {
		if _, err := a.GetJob(ctx, j.ID); !errors.Is(err, queue.ErrJobNotFound) {
			t.Fatalf("job %s of a refused batch: GetJob = %v; want ErrJobNotFound", j.ID, err)
		}
	}
	if after := keysUnder(t, c, a.Prefix()); !slices.Equal(before, after) {
		t.Fatalf("refused batches changed the keys: before %v, after %v", before, after)
	}

	// A reader polling while a big batch goes in sees none of it or all of it.
	const n = 3000
	big := jobs("big", n)
	seen := map[int64]bool{}
	var mu sync.Mutex
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		first := true
		for {
			stats, err := a.Stats(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			var avail int64
			for _, s := range stats {
				if s.Queue == "big" && s.State == queue.StateAvailable {
					avail = s.Count
				}
			}
			mu.Lock()
			seen[avail] = true
			mu.Unlock()
			if first {
				close(started)
				first = false
			}
			if avail == n || ctx.Err() != nil {
				return
			}
		}
	}()
	<-started
	mustInsert(t, a, big...)
	<-done
	for v := range seen {
		if v != 0 && v != n {
			t.Errorf("a reader saw %d of %d jobs of one batch", v, n)
		}
	}
	if !seen[n] {
		t.Errorf("the reader never saw the batch; it saw %v", seen)
	}
}

// TestConcurrentClaimsTakeEachJobOnce: claims are atomic, so workers
// racing for one queue never get the same job.
func TestConcurrentClaimsTakeEachJobOnce(t *testing.T) {
	ctx := ctxFor(t)
	a, _ := newAdapter(t)
	const n = 300
	mustInsert(t, a, jobs("race", n)...)
	var mu sync.Mutex
	got := map[uuid.UUID]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for {
				js, err := claim(ctx, a, "race", fmt.Sprintf("w%d", w), 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(js) == 0 {
					return
				}
				mu.Lock()
				for _, j := range js {
					got[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != n {
		t.Errorf("claimed %d distinct jobs of %d", len(got), n)
	}
	for id, k := range got {
		if k != 1 {
			t.Errorf("job %s was claimed %d times", id, k)
		}
	}
}

func TestPrefixesIsolate(t *testing.T) {
	ctx := ctxFor(t)
	a, _ := newAdapter(t)
	b, _ := newAdapter(t)
	mustInsert(t, a, newJob("shared"))
	if js, err := claim(ctx, b, "shared", "w", 10); err != nil || len(js) != 0 {
		t.Errorf("another prefix claimed (%d jobs, %v)", len(js), err)
	}
	if st, err := b.Stats(ctx); err != nil || len(st) != 0 {
		t.Errorf("another prefix's Stats = %v, %v; want none", st, err)
	}
	if st, err := a.Stats(ctx); err != nil || len(st) != 1 || st[0].Count != 1 {
		t.Errorf("Stats = %v, %v; want one available job", st, err)
	}
}

// TestJobHashLayout checks the documented hash fields, that numbers are
// stored as plain integers, and that times come from the server's clock.
func TestJobHashLayout(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	serverNow := func() int64 {
		tm, err := c.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMicro()
	}
	j := newJob("layout")
	j.Priority = -3
	j.Timeout = 90 * time.Second
	lo := serverNow()
	mustInsert(t, a, j)
	hi := serverNow()
	js, err := claim(ctx, a, "layout", "w1", 1)
	if err != nil || len(js) != 1 {
		t.Fatalf("Claim = %v, %v", js, err)
	}
	if n, err := a.Finish(ctx, "w1", []queue.Outcome{{ID: j.ID, Token: js[0].Token, State: queue.StateRetryable, Error: `boom "quoted" / ünïcode`, Delay: time.Hour}}); err != nil || n != 1 {
		t.Fatalf("Finish = %d, %v", n, err)
	}
	h, err := c.HGetAll(ctx, a.Prefix()+"job:"+j.ID.String()).Result()
	if err != nil {
		t.Fatal(err)
	}
	integer := regexp.MustCompile(`^-?[0-9]+$`)
	for _, f := range []string{"priority", "attempt", "token", "max_retries", "retry_delay_ms", "timeout_ms", "run_at_us", "dispatched_at_us", "attempted_at_us"} {
		if !integer.MatchString(h[f]) {
			t.Errorf("field %s = %q; want an integer", f, h[f])
		}
	}
	if h["state"] != "retryable" || h["priority"] != "-3" || h["timeout_ms"] != "90000" || h["attempted_by"] != "w1" || h["token"] != "1" || h["kind"] != "k" || h["queue"] != "layout" {
		t.Errorf("job hash = %v", h)
	}
	if d, _ := strconv.ParseInt(h["dispatched_at_us"], 10, 64); d < lo || d > hi {
		t.Errorf("dispatched_at_us %d is outside the server's clock window [%d, %d]", d, lo, hi)
	}
	var errs []map[string]any
	if err := json.Unmarshal([]byte(h["errors"]), &errs); err != nil || len(errs) != 1 || errs[0]["error"] != `boom "quoted" / ünïcode` {
		t.Errorf("errors field %s (%v)", h["errors"], err)
	}
	info, err := a.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.LastError() != `boom "quoted" / ünïcode` || info.Errors[0].Attempt != 1 || info.Errors[0].At.Before(info.DispatchedAt) ||
		info.RunAt.Sub(info.DispatchedAt) < 59*time.Minute {
		t.Errorf("job info = %+v", info)
	}
	if score, err := c.ZScore(ctx, a.Prefix()+"delayed", j.ID.String()).Result(); err != nil || int64(score) != info.RunAt.UnixMicro() {
		t.Errorf("delayed score %v (%v); want run_at %d", score, err, info.RunAt.UnixMicro())
	}
}

// TestDeleteLeavesNoKeys: deleting every job removes every key of the prefix.
func TestDeleteLeavesNoKeys(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	done, waiting, later := newJob("d1"), newJob("d2"), newJob("d3")
	later.Delay = time.Hour
	mustInsert(t, a, done, waiting, later)
	js, err := claim(ctx, a, "d1", "w", 1)
	if err != nil || len(js) != 1 {
		t.Fatalf("Claim = %v, %v", js, err)
	}
	if err := a.DeleteJob(ctx, done.ID); !errors.Is(err, queue.ErrJobState) {
		t.Errorf("DeleteJob(running) = %v; want ErrJobState", err)
	}
	if _, err := a.Finish(ctx, "w", []queue.Outcome{{ID: done.ID, Token: js[0].Token, State: queue.StateCompleted, Result: []byte(`1`)}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uuid.UUID{done.ID, waiting.ID, later.ID} {
		if err := a.DeleteJob(ctx, id); err != nil {
			t.Fatalf("DeleteJob: %v", err)
		}
	}
	if err := a.DeleteJob(ctx, done.ID); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("DeleteJob twice = %v; want ErrJobNotFound", err)
	}
	if ks := keysUnder(t, c, a.Prefix()); len(ks) != 0 {
		t.Errorf("keys left after deleting every job: %v", ks)
	}
}

func TestListJobs(t *testing.T) {
	ctx := ctxFor(t)
	a, _ := newAdapter(t)
	// Jobs in three queues, failed in an interleaved order; then many of
	// another kind, so a kind filter has to read past them.
	var failed []uuid.UUID
	for i := range 9 {
		j := newJob(fmt.Sprintf("q%d", i%3))
		j.Kind = "rare"
		mustInsert(t, a, j)
		failed = append(failed, j.ID)
	}
	for i := range 3 {
		for range 3 {
			js, err := claim(ctx, a, fmt.Sprintf("q%d", i), "w", 1)
			if err != nil || len(js) != 1 {
				t.Fatalf("Claim = %v, %v", js, err)
			}
			if _, err := a.Finish(ctx, "w", []queue.Outcome{{ID: js[0].ID, Token: js[0].Token, State: queue.StateFailed, Error: "x"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mid := time.Now()
	mustInsert(t, a, jobs("q1", 250)...)
	slices.Reverse(failed) // newest first

	ids := func(list []*queue.JobInfo) []uuid.UUID {
		out := make([]uuid.UUID, len(list))
		for i, j := range list {
			out[i] = j.ID
		}
		return out
	}
	check := func(name string, f queue.ListFilter, want []uuid.UUID) {
		t.Helper()
		list, err := a.ListJobs(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := ids(list); !slices.Equal(got, want) {
			t.Errorf("%s: got %d jobs %v\nwant %d %v", name, len(got), got, len(want), want)
		}
	}
	check("failed, every queue", queue.ListFilter{State: queue.StateFailed}, failed)
	check("failed, limit 4", queue.ListFilter{State: queue.StateFailed, Limit: 4}, failed[:4])
	check("failed in q1", queue.ListFilter{State: queue.StateFailed, Queue: "q1"}, []uuid.UUID{failed[1], failed[4], failed[7]})
	check("kind rare, behind 250 newer jobs", queue.ListFilter{Kind: "rare"}, failed)
	check("kind rare in q2", queue.ListFilter{Kind: "rare", Queue: "q2"}, []uuid.UUID{failed[0], failed[3], failed[6]})
	check("failed since mid", queue.ListFilter{State: queue.StateFailed, Since: mid}, nil)

	all, err := a.ListJobs(ctx, queue.ListFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 259 || !slices.IsSortedFunc(all, func(x, y *queue.JobInfo) int { return y.DispatchedAt.Compare(x.DispatchedAt) }) {
		t.Errorf("ListJobs() gave %d jobs, sorted newest first: %v", len(all), len(all) == 259)
	}
	q1, err := a.ListJobs(ctx, queue.ListFilter{Queue: "q1", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(q1) != 253 || q1[len(q1)-1].ID != failed[7] {
		t.Errorf("ListJobs(queue q1) gave %d jobs, last %v; want 253, ending with the oldest failed one", len(q1), q1[len(q1)-1].ID)
	}
	if _, err := a.ListJobs(ctx, queue.ListFilter{State: "bogus"}); err == nil {
		t.Error("ListJobs with an unknown state succeeded")
	}
}

// receive waits for the next notification.
func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case q, ok := <-ch:
		if !ok {
			t.Fatal("notification channel closed")
		}
		return q
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
	}
	return ""
}

func TestNotifications(t *testing.T) {
	ctx := ctxFor(t)
	a, _ := newAdapter(t)
	other, _ := newAdapter(t)
	sub, cancel := context.WithCancel(ctx)
	ch, err := a.Subscribe(sub)
	if err != nil {
		t.Fatal(err)
	}

	mustInsert(t, a, newJob("n1"))
	if q := receive(t, ch); q != "n1" {
		t.Fatalf("after an insert into n1, got %q", q)
	}
	// A delayed job wakes nobody until it is due; another prefix's jobs wake
	// nobody here. Messages arrive in order, so the next one proves both.
	delayed := newJob("n2")
	delayed.Delay = 300 * time.Millisecond
	mustInsert(t, a, delayed)
	mustInsert(t, other, newJob("n1"))
	mustInsert(t, a, newJob("n3"))
	if q := receive(t, ch); q != "n3" {
		t.Fatalf("got %q; want n3 (a delayed insert, or another prefix, woke workers)", q)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		promoted, _, err := a.Maintain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if promoted == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the delayed job was not promoted within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if q := receive(t, ch); q != "n2" {
		t.Fatalf("after promoting n2's job, got %q", q)
	}
	// Handing a job back wakes its queue.
	js, err := claim(ctx, a, "n1", "w", 1)
	if err != nil || len(js) != 1 {
		t.Fatalf("Claim = %v, %v", js, err)
	}
	if _, err := a.Finish(ctx, "w", []queue.Outcome{queue.HandBack(js[0], 0)}); err != nil {
		t.Fatal(err)
	}
	if q := receive(t, ch); q != "n1" {
		t.Fatalf("after a hand-back on n1, got %q", q)
	}

	cancel()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the channel was not closed within 10s of cancelling")
		}
	}
}

// TestSubscribeReconnects: when the server drops the subscriber's
// connection, it reconnects and says "any queue may have work".
func TestSubscribeReconnects(t *testing.T) {
	ctx := ctxFor(t)
	name := "tasq-sub-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	opt, err := goredis.ParseURL(testredis.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.ClientName = name
	c := goredis.NewClient(opt)
	defer c.Close()
	a, err := redis.NewFromClient(ctx, c, redis.Options{Prefix: testredis.NewPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin := testredis.NewClient(t)
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var killed int
	for line := range strings.SplitSeq(list, "\n") {
		if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " sub=1 ") {
			id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
			if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("found %d subscriber connections named %s in CLIENT LIST:\n%s", killed, name, list)
	}
	if q := receive(t, ch); q != "" {
		t.Fatalf("after the connection was dropped, got %q; want \"\" (any queue)", q)
	}
	mustInsert(t, a, newJob("again"))
	for {
		if q := receive(t, ch); q == "again" {
			break
		}
	}
}
