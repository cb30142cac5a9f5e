package integration

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Metered counts how many of its jobs run at once, overall and per
// customer, in the process: a Handle runs only while its job is running in
// the database, so these counts never exceed what the database counts.
type Metered struct {
	Customer string `json:"customer"`
	Key      string `json:"key"`
}

func (*Metered) Config() queue.Config {
	return queue.Config{Queue: "metered", MaxRetries: queue.NoRetries}
}

type meter struct {
	mu       sync.Mutex
	running  int
	peak     int
	perKey   map[string]int
	peakKey  map[string]int
	finished int
}

var meters sync.Map // probe key -> *meter

func (t *Metered) Handle(ctx context.Context) (struct{}, error) {
	v, _ := meters.Load(t.Key)
	m := v.(*meter)
	m.mu.Lock()
	m.running++
	m.perKey[t.Customer]++
	m.peak = max(m.peak, m.running)
	m.peakKey[t.Customer] = max(m.peakKey[t.Customer], m.perKey[t.Customer])
	m.mu.Unlock()
	select {
	case <-time.After(5 * time.Millisecond):
	case <-ctx.Done():
	}
	m.mu.Lock()
	m.running--
	m.perKey[t.Customer]--
	m.finished++
	m.mu.Unlock()
	return struct{}{}, nil
}

// Four workers, each with its own connection pool as on separate machines,
// serve a queue limited to 3 running jobs, 1 per customer, and 4 starts per
// customer per 250 ms. The peaks observed never exceed the limits, the
// starts recorded in the database never crowd an interval, and every job
// runs: a finished job wakes the waiting workers (their poll is an hour).
func TestGlobalLimitsAcrossWorkers(t *testing.T) {
	e := newEnv(t)
	const per = 250 * time.Millisecond
	limits := queue.QueueLimits{
		Total:    queue.Limit{MaxRunning: 3},
		KeyField: "customer",
		PerKey:   queue.Limit{MaxRunning: 1, MaxStarts: 4, Per: per},
	}
	if err := e.adapter.SetQueueLimits(e.ctx, "metered", limits); err != nil {
		t.Fatal(err)
	}
	key := t.Name()
	m := &meter{perKey: map[string]int{}, peakKey: map[string]int{}}
	meters.Store(key, m)
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &Metered{})
	const jobs = 80
	tasks := make([]any, jobs)
	for i := range tasks {
		tasks[i] = &Metered{Customer: fmt.Sprintf("c%d", i%5), Key: key}
	}
	if _, err := e.client.DispatchMany(e.ctx, tasks); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		a, err := postgres.New(e.ctx, e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		w, err := worker.New(a, reg, worker.Config{
			ID: fmt.Sprintf("limits-%d", i), Queues: []string{"metered"}, Concurrency: 8,
			PollInterval: time.Hour, Logger: quietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan struct{})
		go func() { _ = w.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	waitFor(t, 60*time.Second, "every limited job finished", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.finished == jobs
	})
	m.mu.Lock()
	t.Logf("peak %d running (limit 3), per customer %v (limit 1)", m.peak, m.peakKey)
	if m.peak > 3 {
		t.Errorf("peak %d jobs running at once; the limit is 3", m.peak)
	}
	for c, n := range m.peakKey {
		if n > 1 {
			t.Errorf("customer %s had %d jobs running at once; the limit is 1", c, n)
		}
	}
	m.mu.Unlock()
	rows, err := e.pool.Query(e.ctx, `SELECT payload->>'customer', attempted_at FROM tasq_jobs WHERE queue = 'metered'`)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string][]time.Time{}
	for rows.Next() {
		var c string
		var at time.Time
		if err := rows.Scan(&c, &at); err != nil {
			t.Fatal(err)
		}
		starts[c] = append(starts[c], at)
	}
	rows.Close()
	for c, ts := range starts {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 0; i+4 < len(ts); i++ {
			if gap := ts[i+4].Sub(ts[i]); gap < per {
				t.Fatalf("customer %s: 5 starts within %v (%v); the limit is 4 per %v", c, gap, ts[i:i+5], per)
			}
		}
	}
}

// A paused queue is claimed by no worker; jobs already running finish; a
// resume wakes the workers at once (their poll is an hour).
func TestPauseAcrossWorkers(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &Waiter{})
	queue.MustRegister(reg, &Ping{})
	e.startWorker(reg, worker.Config{Queues: []string{"waiting", "mixed"}, PollInterval: time.Hour})
	first, err := e.client.Dispatch(e.ctx, &Waiter{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(first, queue.StateRunning, 10*time.Second)
	if err := e.adapter.PauseQueue(e.ctx, "waiting"); err != nil {
		t.Fatal(err)
	}
	second, err := e.client.Dispatch(e.ctx, &Waiter{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	close(p.release) // the running one finishes while the queue is paused
	e.waitState(first, queue.StateCompleted, 10*time.Second)
	// A job of another queue, dispatched after, runs: the worker has been
	// woken since the second Waiter was dispatched, and left it alone.
	barrier, err := e.client.Dispatch(e.ctx, &Ping{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(barrier, queue.StateCompleted, 10*time.Second)
	if st := e.job(second).State; st != queue.StateAvailable {
		t.Fatalf("a job of the paused queue is %s; want available", st)
	}
	if err := e.adapter.ResumeQueue(e.ctx, "waiting"); err != nil {
		t.Fatal(err)
	}
	e.waitState(second, queue.StateCompleted, 10*time.Second)
}
