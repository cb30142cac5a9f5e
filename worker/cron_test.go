package worker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// firingSource is a memSource whose schedules a worker fires: every call
// fails while failing is set, and otherwise dispatches one job of okTask.
type firingSource struct {
	*memSource
	calls   atomic.Int64
	failing atomic.Bool
}

func (f *firingSource) FireSchedules(ctx context.Context, now time.Time) ([]queue.FiredSchedule, error) {
	f.calls.Add(1)
	if !now.IsZero() {
		return nil, errors.New("the worker must fire on the backend's clock")
	}
	if f.failing.Load() {
		return nil, errors.New("database unreachable")
	}
	id := f.add("okTask", &okTask{}, 0)
	return []queue.FiredSchedule{{Name: "s", JobIDs: []uuid.UUID{id}, Next: time.Now().Add(time.Hour)}}, nil
}

// A worker fires the backend's schedules every Cron.Interval, goes on after
// a failed pass, runs the jobs they dispatch, and stops firing when it
// stops.
func TestWorkerFiresSchedules(t *testing.T) {
	t.Parallel()
	src := &firingSource{memSource: newMemSource()}
	src.failing.Store(true)
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	_, stop := start(t, src, reg, Config{Cron: CronConfig{Interval: 5 * time.Millisecond}})
	waitFor(t, "passes after failures", func() bool { return src.calls.Load() >= 3 })
	src.failing.Store(false)
	waitFor(t, "fired jobs completed", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		done := 0
		for _, j := range src.jobs {
			if j.state == queue.StateCompleted {
				done++
			}
		}
		return done >= 3
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	after := src.calls.Load()
	time.Sleep(30 * time.Millisecond) // six intervals: a firer still running would call again
	if n := src.calls.Load(); n != after {
		t.Errorf("FireSchedules called %d more times after Run returned", n-after)
	}
}

// A worker with Cron.Disabled never fires; a negative interval is refused.
func TestWorkerCronConfig(t *testing.T) {
	t.Parallel()
	src := &firingSource{memSource: newMemSource()}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &okTask{})
	id := src.add("okTask", &okTask{}, 0)
	_, stop := start(t, src, reg, Config{Cron: CronConfig{Interval: time.Millisecond, Disabled: true}})
	waitFor(t, "a job runs", stateIs(src.memSource, id, queue.StateCompleted))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := src.calls.Load(); n != 0 {
		t.Errorf("a worker with Cron.Disabled fired %d times", n)
	}
	_, err := New(src, reg, Config{Cron: CronConfig{Interval: -time.Second}})
	if err == nil || !strings.Contains(err.Error(), "Cron.Interval") {
		t.Errorf("negative Cron.Interval: %v", err)
	}
	w, err := New(src, reg, Config{})
	if err != nil || w.cfg.Cron.Interval != time.Second {
		t.Errorf("default Cron.Interval = %v, %v; want 1s", w.cfg.Cron.Interval, err)
	}
}
