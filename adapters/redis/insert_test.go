package redis_test

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/queue"
)

// bigBatch returns 2.5 chunks of jobs over three queues, with priorities
// from -2 to 2; every fourth is delayed an hour and every seventh a
// nanosecond (still scheduled: not available at once).
func bigBatch() []queue.NewJob {
	n := redis.InsertChunk*2 + redis.InsertChunk/2
	out := make([]queue.NewJob, n)
	for i := range out {
		j := queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: fmt.Sprintf("k%d", i%2), Queue: fmt.Sprintf("q%d", i%3),
			Priority: int16(i%5 - 2), Payload: fmt.Appendf(nil, `{"n":%d}`, i), MaxRetries: i % 4,
			RetryDelay: time.Duration(i) * time.Millisecond, Timeout: time.Duration(i%10) * time.Second}
		switch {
		case i%4 == 0:
			j.Delay = time.Hour
		case i%7 == 0:
			j.Delay = time.Nanosecond
		}
		out[i] = j
	}
	return out
}

// TestInsertBigBatch: a batch larger than one chunk of the insert script
// stores every job with every field and every index entry, as claims,
// stats, listing and maintenance read them.
func TestInsertBigBatch(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	p := a.Prefix()
	batch := bigBatch()
	lo := serverMicros(t, c)
	mustInsert(t, a, batch...)
	hi := serverMicros(t, c)

	type key struct{ state, q string }
	count := map[key]int64{}
	var dispatched int64
	for i, j := range batch {
		id := j.ID.String()
		h, err := c.HGetAll(ctx, p+"job:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			dispatched, _ = strconv.ParseInt(h["dispatched_at_us"], 10, 64)
			if dispatched < lo || dispatched > hi {
				t.Fatalf("dispatched_at_us %d outside the server's clock window [%d, %d]", dispatched, lo, hi)
			}
		}
		state, runAt := "available", dispatched
		if j.Delay > 0 {
			state, runAt = "scheduled", dispatched+max(j.Delay.Microseconds(), 1)
		}
		count[key{state, j.Queue}]++
		want := map[string]string{
			"id": id, "kind": j.Kind, "queue": j.Queue, "state": state, "priority": strconv.Itoa(int(j.Priority)),
			"payload": string(j.Payload), "attempt": "0", "token": "0", "max_retries": strconv.Itoa(j.MaxRetries),
			"retry_delay_ms": strconv.FormatInt(j.RetryDelay.Milliseconds(), 10), "timeout_ms": strconv.FormatInt(j.Timeout.Milliseconds(), 10),
			"run_at_us": strconv.FormatInt(runAt, 10), "dispatched_at_us": strconv.FormatInt(dispatched, 10), "errors": "[]",
		}
		if !maps.Equal(h, want) {
			t.Fatalf("job %d: hash %v\nwant %v", i, h, want)
		}
		zscore := func(k, m string) (float64, bool) {
			s, err := c.ZScore(ctx, p+k, m).Result()
			if errors.Is(err, goredis.Nil) {
				return 0, false
			}
			if err != nil {
				t.Fatal(err)
			}
			return s, true
		}
		if s, ok := zscore("jobs", id); !ok || int64(s) != dispatched {
			t.Fatalf("job %d: jobs score %v, %v", i, s, ok)
		}
		if s, ok := zscore("idx:"+state+":"+j.Queue, id); !ok || int64(s) != dispatched {
			t.Fatalf("job %d: idx:%s:%s score %v, %v", i, state, j.Queue, s, ok)
		}
		member := fmt.Sprintf("%016d:%s", runAt, id)
		as, inAvail := zscore("avail:"+j.Queue, member)
		ds, inDelayed := zscore("delayed", id)
		if state == "available" && (!inAvail || as != -float64(j.Priority) || inDelayed) {
			t.Fatalf("job %d (available): avail score %v, %v; delayed %v", i, as, inAvail, inDelayed)
		}
		if state == "scheduled" && (inAvail || !inDelayed || int64(ds) != runAt) {
			t.Fatalf("job %d (scheduled): delayed score %v, %v; in avail %v", i, ds, inDelayed, inAvail)
		}
	}
	if n := c.ZCard(ctx, p+"jobs").Val(); n != int64(len(batch)) {
		t.Errorf("jobs holds %d; want %d", n, len(batch))
	}
	var scheduled int64
	for k, n := range count {
		if got := c.ZCard(ctx, p+"idx:"+k.state+":"+k.q).Val(); got != n {
			t.Errorf("idx:%s:%s holds %d; want %d", k.state, k.q, got, n)
		}
		if k.state == "available" {
			if got := c.ZCard(ctx, p+"avail:"+k.q).Val(); got != n {
				t.Errorf("avail:%s holds %d; want %d", k.q, got, n)
			}
		} else {
			scheduled += n
		}
	}
	if got := c.ZCard(ctx, p+"delayed").Val(); got != scheduled {
		t.Errorf("delayed holds %d; want %d", got, scheduled)
	}
	qs := c.SMembers(ctx, p+"queues").Val()
	if slices.Sort(qs); !slices.Equal(qs, []string{"q0", "q1", "q2"}) {
		t.Errorf("queues = %v", qs)
	}
	stats, err := a.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if count[key{string(s.State), s.Queue}] != s.Count {
			t.Errorf("Stats: %s %s = %d; want %d", s.Queue, s.State, s.Count, count[key{string(s.State), s.Queue}])
		}
	}

	// A claim takes q1's available jobs by priority, then ID (one run_at).
	var want []uuid.UUID
	var inQ1 []queue.NewJob
	for _, j := range batch {
		if j.Queue == "q1" && j.Delay == 0 {
			inQ1 = append(inQ1, j)
		}
	}
	slices.SortFunc(inQ1, func(x, y queue.NewJob) int {
		return cmp.Or(cmp.Compare(y.Priority, x.Priority), cmp.Compare(x.ID.String(), y.ID.String()))
	})
	for _, j := range inQ1 {
		want = append(want, j.ID)
	}
	js, err := claim(ctx, a, "q1", "w", len(batch))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]uuid.UUID, len(js))
	for i, j := range js {
		got[i] = j.ID
	}
	if !slices.Equal(got, want) {
		t.Errorf("claimed %d jobs of q1 in another order than %d by priority and ID", len(got), len(want))
	}
}

// TestInsertBigBatchRefusedStoresNothing: a batch larger than one chunk is
// refused whole when an ID in a later chunk exists, when an ID is in it
// twice (the script's own check, behind Go's), or when an index key it
// would write has the wrong type.
func TestInsertBigBatchRefusedStoresNothing(t *testing.T) {
	ctx := ctxFor(t)
	a, c := newAdapter(t)
	existing := newJob("q2")
	mustInsert(t, a, existing)
	before := keysUnder(t, c, a.Prefix())
	unchanged := func(what string) {
		t.Helper()
		if after := keysUnder(t, c, a.Prefix()); !slices.Equal(before, after) {
			t.Fatalf("%s changed the keys: %d before, %d after", what, len(before), len(after))
		}
		if n := c.ZCard(ctx, a.Prefix()+"jobs").Val(); n != 1 {
			t.Fatalf("%s: jobs holds %d; want 1", what, n)
		}
	}

	batch := bigBatch()
	// The ID is checked in chunks: try it at each chunk's ends.
	ch := redis.InsertChunk
	for _, at := range []int{0, ch - 1, ch, 2*ch - 1, 2 * ch, len(batch) - 1} {
		withExisting := slices.Clone(batch)
		withExisting[at] = existing
		if err := a.Insert(ctx, withExisting); !errors.Is(err, queue.ErrJobExists) || !containsID(err, existing.ID) {
			t.Fatalf("Insert with an existing ID at %d of %d = %v; want ErrJobExists naming %s", at, len(batch), err, existing.ID)
		}
		unchanged(fmt.Sprintf("an existing ID at %d", at))
	}

	twice := slices.Clone(batch)
	twice[len(batch)-1].ID = twice[5].ID
	if err := redis.InsertUnchecked(a, ctx, twice); !errors.Is(err, queue.ErrJobExists) || !containsID(err, twice[5].ID) {
		t.Fatalf("insert script with an ID twice = %v; want ErrJobExists naming %s", err, twice[5].ID)
	}
	unchanged("an ID twice")

	for _, k := range []string{"idx:scheduled:q1", "avail:q0", "queues", "jobs"} {
		// The key (if any) is set aside, a string put in its place, and
		// the key restored after the refusal.
		k = a.Prefix() + k
		saved := c.Exists(ctx, k).Val() == 1
		if saved {
			if err := c.Rename(ctx, k, k+":saved").Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Set(ctx, k, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := a.Insert(ctx, batch); err == nil || !containsText(err, "WRONGTYPE") {
			t.Fatalf("Insert with %s a string = %v; want a WRONGTYPE error", k, err)
		}
		if err := c.Del(ctx, k).Err(); err != nil {
			t.Fatal(err)
		}
		if saved {
			if err := c.Rename(ctx, k+":saved", k).Err(); err != nil {
				t.Fatal(err)
			}
		}
		unchanged(k + " of the wrong type")
	}
	mustInsert(t, a, batch...)
	if n := c.ZCard(ctx, a.Prefix()+"jobs").Val(); n != int64(len(batch))+1 {
		t.Errorf("after the refusals, the batch stored %d jobs; want %d", n-1, len(batch))
	}
}

func containsID(err error, id uuid.UUID) bool { return containsText(err, id.String()) }

func containsText(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

func serverMicros(t *testing.T, c *goredis.Client) int64 {
	t.Helper()
	tm, err := c.Time(ctxFor(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMicro()
}
