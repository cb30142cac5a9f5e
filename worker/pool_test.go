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

// Handles that wait on something (a sleep; about a millisecond here, the
// timer's granularity): the pool grows past its floor, as such jobs need.
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
		time.Sleep(200 * time.Microsecond)
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

// The decision of one check, for the Handles no sleep in a test can make:
// those that wait a fraction of a millisecond on the network. The pool
// doubles after slowChecks checks that find every executor inside a Handle,
// however many returned (an earlier rule wanted fewer than two returns per
// executor per check, and held Handles of 0.1-0.5 ms at the floor: about
// 20k jobs/s with 8 executors); it starts one per waiting job after
// stuckChecks checks without a return; it never grows while an executor is
// outside a Handle.
func TestPoolGrowthDecision(t *testing.T) {
	type check struct {
		inHandle int
		returned int64
		want     int
	}
	const executors, waiting = 8, 500
	for _, c := range []struct {
		name   string
		checks []check
	}{
		{"Handles of a fifth of a millisecond: 40 returns a check", []check{{8, 40, 0}, {8, 40, 0}, {8, 40, executors}}},
		{"Handles that block: no returns", []check{{8, 0, 0}, {8, 0, 0}, {8, 0, executors}, {8, 0, 0}, {8, 0, waiting}}},
		{"an executor outside a Handle resets the count", []check{{8, 40, 0}, {8, 40, 0}, {7, 40, 0}, {8, 40, 0}, {8, 40, 0}, {8, 40, executors}}},
		{"quick Handles: never all inside", []check{{3, 900, 0}, {5, 900, 0}, {0, 900, 0}, {7, 900, 0}}},
	} {
		quiet, slow := 0, 0
		for i, k := range c.checks {
			var n int
			n, quiet, slow = growth(executors, k.inHandle, waiting, k.returned, quiet, slow)
			if n != k.want {
				t.Errorf("%s: check %d started %d executors, want %d", c.name, i+1, n, k.want)
			}
		}
	}
}
