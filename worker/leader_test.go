package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// electingSource is a memSource with a leader lease, maintenance and purge,
// as a backend that elects one maintenance leader.
type electingSource struct {
	*memSource
	lmu      sync.Mutex
	leaderID string
	until    time.Time
	purges   []queue.PurgeFilter
	maintain map[string]int
}

func newElectingSource() *electingSource {
	return &electingSource{memSource: newMemSource(), maintain: map[string]int{}}
}

func (e *electingSource) TryLead(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.leaderID == id || time.Now().After(e.until) {
		e.leaderID, e.until = id, time.Now().Add(ttl)
		return true, nil
	}
	return false, nil
}

func (e *electingSource) Resign(ctx context.Context, id string) error {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.leaderID == id {
		e.leaderID, e.until = "", time.Time{}
	}
	return nil
}

func (e *electingSource) Maintain(ctx context.Context) (int, int, error) { return 0, 0, nil }

func (e *electingSource) Purge(ctx context.Context, f queue.PurgeFilter) (int, error) {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	e.purges = append(e.purges, f)
	return 0, nil
}

func (e *electingSource) CountPurgeable(ctx context.Context, f queue.PurgeFilter) (int64, error) {
	return 0, nil
}

func (e *electingSource) leader() string {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if time.Now().After(e.until) {
		return ""
	}
	return e.leaderID
}

// Only the elected worker maintains; when it stops, another takes over
// within the bound (a term plus a third).
func TestOnlyTheLeaderMaintainsAndAnotherTakesOver(t *testing.T) {
	t.Parallel()
	src := newElectingSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	cfg := func(id string) Config {
		return Config{ID: id, LeaderTTL: 300 * time.Millisecond, MaintenanceInterval: 20 * time.Millisecond}
	}
	a, stopA := start(t, src, reg, cfg("a"))
	waitFor(t, "a leads", func() bool { return src.leader() == "a" && a.Stats().Leader })
	b, _ := start(t, src, reg, cfg("b"))
	c, _ := start(t, src, reg, cfg("c"))
	waitFor(t, "a maintains", func() bool { return a.Stats().MaintenanceRuns > 10 })
	if b.Stats().MaintenanceRuns != 0 || c.Stats().MaintenanceRuns != 0 || b.Stats().Leader || c.Stats().Leader {
		t.Fatalf("followers maintained: b %+v c %+v", b.Stats(), c.Stats())
	}
	// The leader stops without resigning (as if killed): its term must run
	// out before another worker takes over. Simulate by freezing a's term.
	src.lmu.Lock()
	src.until = time.Now().Add(300 * time.Millisecond)
	src.lmu.Unlock()
	stopped := time.Now()
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	// stopA resigned (a clean stop); a killed leader would not. Either way a
	// follower must lead within a term and a third.
	waitFor(t, "b or c leads", func() bool { l := src.leader(); return l == "b" || l == "c" })
	if took := time.Since(stopped); took > 400*time.Millisecond+200*time.Millisecond {
		t.Errorf("takeover took %v, want within about 1⅓ LeaderTTL", took)
	}
	waitFor(t, "the new leader maintains", func() bool { return b.Stats().MaintenanceRuns+c.Stats().MaintenanceRuns > 5 })
	if b.Stats().Leader == c.Stats().Leader {
		t.Errorf("b leads %v, c leads %v: want exactly one", b.Stats().Leader, c.Stats().Leader)
	}
}

// Retention asks the backend for the right purges: the defaults for every
// queue except those with ages of their own, and KeepForever skipped.
func TestRetentionPurgesByStateAndQueue(t *testing.T) {
	t.Parallel()
	src := newElectingSource()
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	start(t, src, reg, Config{LeaderTTL: time.Second, MaintenanceInterval: 20 * time.Millisecond, Retention: Retention{
		Failed: queue.KeepForever,
		Queues: map[string]RetentionAges{"audit": {Completed: queue.KeepForever}, "chatty": {Completed: time.Minute}},
	}})
	waitFor(t, "a retention pass", func() bool { src.lmu.Lock(); defer src.lmu.Unlock(); return len(src.purges) >= 5 })
	src.lmu.Lock()
	got := map[string]queue.PurgeFilter{}
	for _, f := range src.purges[:5] {
		got[string(f.State)+"/"+f.Queue] = f
	}
	src.lmu.Unlock()
	want := map[string]time.Duration{
		"completed/":       DefaultKeepCompleted,
		"cancelled/":       DefaultKeepCancelled,
		"completed/chatty": time.Minute,
		"cancelled/chatty": DefaultKeepCancelled,
		"cancelled/audit":  DefaultKeepCancelled,
	}
	for k, age := range want {
		f, ok := got[k]
		if !ok || f.OlderThan != age {
			t.Errorf("purge %s: %+v, want age %v (all: %+v)", k, f, age, got)
		}
	}
	if f := got["completed/"]; len(f.ExceptQueues) != 2 {
		t.Errorf("default purge does not leave out the queues with their own ages: %+v", f)
	}
	for k := range got {
		if k == "failed/" || k == "completed/audit" || k == "failed/chatty" {
			t.Errorf("purge %s ran although its age is KeepForever", k)
		}
	}
}
