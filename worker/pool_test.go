package worker

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// executorsStarted is how many executors w has started.
func (w *Worker) executorsStarted() int {
	w.pool.mu.Lock()
	defer w.pool.mu.Unlock()
	return w.pool.executors
}

// Handles that block: every job claimed runs at once, up to Concurrency,
// though that is far above the pool's floor.
func TestPoolGrowsToConcurrencyForBlockedHandles(t *testing.T) {
	t.Parallel()
	conc := 3 * poolFloor(1<<30)
	src := newMemSource()
	g := newGate()
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, gateFunc(g, true, queue.Config{})); err != nil {
		t.Fatal(err)
	}
	ids := make([]uuid.UUID, conc)
	for i := range ids {
		ids[i] = src.add("gate", gateArgs{N: i}, 0)
	}
	w, stop := start(t, src, reg, Config{Concurrency: conc})
	waitFor(t, "every job running at once", func() bool { return g.running.Load() == int64(conc) })
	if n := w.executorsStarted(); n != conc {
		t.Errorf("%d executors for %d blocked Handles", n, conc)
	}
	g.open()
	for _, id := range ids {
		waitFor(t, "job completed", stateIs(src, id, queue.StateCompleted))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// Handles that take a couple of milliseconds each (a call over the
// network): the pool grows past its floor, as such jobs need.
func TestPoolGrowsForSlowHandles(t *testing.T) {
	t.Parallel()
	floor := poolFloor(1 << 30)
	conc := 8 * floor
	src := newMemSource()
	g := newGate()
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, queue.NewFunc("slow", queue.Config{}, func(ctx context.Context, a gateArgs) (int, error) {
		g.enter()
		defer g.running.Add(-1)
		time.Sleep(3 * time.Millisecond)
		return a.N, nil
	})); err != nil {
		t.Fatal(err)
	}
	for i := range 40 * conc {
		src.add("slow", gateArgs{N: i}, 0)
	}
	w, stop := start(t, src, reg, Config{Concurrency: conc})
	waitFor(t, "more Handles at once than the pool's floor", func() bool { return g.peak.Load() > int64(2*floor) })
	if n := w.executorsStarted(); n <= floor || n > conc {
		t.Errorf("%d executors (floor %d, concurrency %d)", n, floor, conc)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// Handles that return at once: however many jobs a claim hands over, the
// pool stays at its floor (it used to start one executor per job waiting:
// about as many as a claim holds).
func TestPoolStaysAtItsFloorForFastHandles(t *testing.T) {
	t.Parallel()
	const jobs, conc = 20_000, 2_000
	src := newMemSource()
	reg := queue.NewRegistry()
	if err := queue.RegisterFunc(reg, queue.NewFunc("fast", queue.Config{}, func(ctx context.Context, a gateArgs) (int, error) {
		return a.N, nil
	})); err != nil {
		t.Fatal(err)
	}
	for i := range jobs {
		src.add("fast", gateArgs{N: i}, 0)
	}
	w, stop := start(t, src, reg, Config{Concurrency: conc})
	waitFor(t, "every job completed", func() bool { return w.Stats().Completed == jobs })
	if n, floor := w.executorsStarted(), poolFloor(conc); n > floor {
		t.Errorf("%d executors for Handles that return at once; want at most the floor, %d", n, floor)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
