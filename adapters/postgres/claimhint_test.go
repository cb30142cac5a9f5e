package postgres

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// hintEnv is an adapter on a database of its own with the claim hints'
// rescan period under the test's control.
type hintEnv struct {
	t   *testing.T
	ctx context.Context
	a   *Adapter
}

func newHintEnv(t *testing.T, rescan time.Duration) *hintEnv {
	t.Helper()
	a, ctx := newInspectAdapter(t) // autovacuum off: nothing but the claims moves the hint
	a.hints.rescan = rescan
	return &hintEnv{t: t, ctx: ctx, a: a}
}

// insert stores n jobs of queue q with priority p, one after another (so in
// claim order) and returns their IDs in that order.
func (e *hintEnv) insert(q string, p int16, n int) []uuid.UUID {
	e.t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
		if err := e.a.Insert(e.ctx, []queue.NewJob{{ID: ids[i], Kind: "k", Queue: q, Priority: p, Payload: []byte(`{}`)}}); err != nil {
			e.t.Fatal(err)
		}
	}
	return ids
}

func (e *hintEnv) claim(q string, limit int) []uuid.UUID {
	e.t.Helper()
	jobs, err := e.a.Claim(e.ctx, queue.ClaimRequest{Queue: q, WorkerID: "w", Limit: limit, Lease: time.Minute})
	if err != nil {
		e.t.Fatal(err)
	}
	ids := make([]uuid.UUID, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

func (e *hintEnv) hinted(q string) bool {
	_, ok := e.a.hints.get(hintKey(q, nil), time.Now())
	return ok
}

func sameSet(a, b []uuid.UUID) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	cmp := func(p, q uuid.UUID) int { return slices.Compare(p[:], q[:]) }
	slices.SortFunc(x, cmp)
	slices.SortFunc(y, cmp)
	return slices.Equal(x, y)
}

// While a queue has a backlog, a claim starts where the previous one ended:
// a job that sorts before that point (here one of higher priority) waits
// for the next claim from the head of the queue, which comes at least every
// rescan period, and then goes first.
func TestHintedClaimStartsWhereTheLastClaimEnded(t *testing.T) {
	e := newHintEnv(t, time.Hour)
	backlog := e.insert("q", 0, 30)

	if got := e.claim("q", 10); !sameSet(got, backlog[:10]) {
		t.Fatalf("first claim took %v; want the 10 oldest", got)
	}
	if !e.hinted("q") {
		t.Fatal("a claim that filled its limit left no hint")
	}
	urgent := e.insert("q", 5, 1)[0]
	if got := e.claim("q", 10); !sameSet(got, backlog[10:20]) {
		t.Fatalf("hinted claim took %v; want the next 10 of the backlog (the urgent job sorts before the hint)", got)
	}

	e.a.hints.rescan = 0 // the rescan period is over
	got := e.claim("q", 10)
	if !slices.Contains(got, urgent) || !sameSet(got, append([]uuid.UUID{urgent}, backlog[20:29]...)) {
		t.Fatalf("claim after the rescan period took %v; want the urgent job and the next 9", got)
	}
}

// A hinted claim that finds fewer jobs than it asked for claims the rest
// from the head of the queue in the same call.
func TestHintedClaimThatRunsShortClaimsTheRestFromTheHead(t *testing.T) {
	e := newHintEnv(t, time.Hour)
	backlog := e.insert("q", 0, 20)
	e.claim("q", 10)
	urgent := e.insert("q", 5, 1)[0]

	got := e.claim("q", 15)
	if !sameSet(got, append([]uuid.UUID{urgent}, backlog[10:]...)) {
		t.Fatalf("claim took %v; want the 10 past the hint and the urgent job", got)
	}
	if e.hinted("q") {
		t.Error("hint kept after the queue ran dry")
	}
}

// Without a backlog every claim starts at the head: a job that sorts before
// the last one claimed is taken at once.
func TestClaimWithoutBacklogStartsAtTheHead(t *testing.T) {
	e := newHintEnv(t, time.Hour)
	e.insert("q", 0, 5)
	if got := e.claim("q", 10); len(got) != 5 {
		t.Fatalf("claimed %d of 5", len(got))
	}
	if e.hinted("q") {
		t.Fatal("hint set by a claim that did not fill its limit")
	}
	urgent := e.insert("q", 5, 1)[0]
	e.insert("q", 0, 3)
	if got := e.claim("q", 10); len(got) != 4 || !slices.Contains(got, urgent) {
		t.Fatalf("claim took %v; want the urgent job and the 3 others", got)
	}
}

// Hints are per queue and set of kinds.
func TestClaimHintsArePerQueueAndKinds(t *testing.T) {
	e := newHintEnv(t, time.Hour)
	e.insert("a", 0, 4)
	e.insert("b", 0, 4)
	e.claim("a", 2)
	if !e.hinted("a") || e.hinted("b") {
		t.Fatalf("hints after a claim of queue a: a %v, b %v; want a only", e.hinted("a"), e.hinted("b"))
	}
	if _, err := e.a.Claim(e.ctx, queue.ClaimRequest{Queue: "b", WorkerID: "w", Limit: 1, Lease: time.Minute, Kinds: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	if e.hinted("b") {
		t.Error("a claim of some kinds set the hint of claims of any kind")
	}
	if _, ok := e.a.hints.get(hintKey("b", []string{"k"}), time.Now()); !ok {
		t.Error("no hint for the claim of kind k")
	}
}

// Several processes claiming one backlog from their own hints, while more
// jobs arrive (some of higher priority, sorting before every hint), claim
// every job exactly once.
func TestHintedClaimsOfSeveralProcessesTakeEveryJobOnce(t *testing.T) {
	url := testpg.NewDatabase(t)
	ctx := context.Background()
	const procs, initial, late = 4, 2000, 200
	adapters := make([]*Adapter, procs)
	for i := range adapters {
		a, err := New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		a.hints.rescan = 20 * time.Millisecond
		adapters[i] = a
	}
	want := map[uuid.UUID]bool{}
	add := func(n int, p int16) {
		jobs := make([]queue.NewJob, n)
		for i := range jobs {
			jobs[i] = queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: "q", Priority: p, Payload: []byte(`{}`)}
			want[jobs[i].ID] = true
		}
		if err := adapters[0].Insert(ctx, jobs); err != nil {
			t.Fatal(err)
		}
	}
	add(initial, 0)

	var mu sync.Mutex
	seen := map[uuid.UUID]int{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, a := range adapters {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: "q", WorkerID: "w", Limit: 25, Lease: time.Minute})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, j := range jobs {
					seen[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	for i := range late / 10 {
		add(10, int16(i%3))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= initial+late || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(seen) != len(want) {
		t.Errorf("claimed %d distinct jobs of %d", len(seen), len(want))
	}
	for id, n := range seen {
		if n != 1 || !want[id] {
			t.Errorf("job %s claimed %d times (dispatched: %v)", id, n, want[id])
		}
	}
}

// The claim order of keys: priority descending, then run time, then ID.
func TestClaimKeyOrder(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	lo, hi := uuid.MustParse("00000000-0000-7000-8000-000000000001"), uuid.MustParse("00000000-0000-7000-8000-000000000002")
	ordered := []claimKey{
		{priority: 5, runAt: t0.Add(time.Hour), id: hi},
		{priority: 0, runAt: t0, id: lo},
		{priority: 0, runAt: t0, id: hi},
		{priority: 0, runAt: t0.Add(time.Microsecond), id: lo},
		{priority: -1, runAt: t0, id: lo},
	}
	for i := range ordered {
		for j := range ordered {
			if got := ordered[i].before(ordered[j]); got != (i < j) {
				t.Errorf("%v before %v = %v; want %v", ordered[i], ordered[j], got, i < j)
			}
		}
	}
}

// A hint lasts the rescan period from the claim from the head that set it;
// advancing it never moves it back.
func TestClaimHintsExpireAndOnlyAdvance(t *testing.T) {
	h := claimHints{rescan: 100 * time.Millisecond}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	k1 := claimKey{runAt: t0}
	k2 := claimKey{runAt: t0.Add(time.Second)}
	h.set("q", k2, t0)
	h.advance("q", k1)
	if got, ok := h.get("q", t0.Add(99*time.Millisecond)); !ok || got != k2 {
		t.Errorf("get within the period = %v, %v; want k2, true", got, ok)
	}
	if _, ok := h.get("q", t0.Add(100*time.Millisecond)); ok {
		t.Error("hint used at the end of its period")
	}
	if _, ok := h.get("q", t0.Add(-time.Millisecond)); ok {
		t.Error("hint used before the claim that set it (the clock went back)")
	}
	h.drop("q")
	h.advance("q", k2)
	if _, ok := h.get("q", t0); ok {
		t.Error("advance brought back a dropped hint")
	}
}
