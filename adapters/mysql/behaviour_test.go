package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the zone in TestTimesAreUTC, wherever the tests run

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/mysql"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/queue"
)

func job(q string, prio int16) queue.NewJob {
	return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "mysql.test", Queue: q, Payload: []byte(`{"x":1}`),
		Priority: prio, MaxRetries: 1, RetryDelay: time.Second}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Concurrent claimers each get distinct jobs, none is lost, and the batch
// writes of claims, renewals and outcomes do not deadlock one another.
func TestConcurrentClaimers(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	const total, workers = 400, 4
	jobs := make([]queue.NewJob, total)
	for i := range jobs {
		jobs[i] = job("busy", int16(i%3))
	}
	if err := a.Insert(c, jobs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uuid.UUID]string{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			id := fmt.Sprintf("w%d", w)
			for {
				got, err := a.Claim(c, "busy", id, 7, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				ids := make([]uuid.UUID, len(got))
				outs := make([]queue.Outcome, len(got))
				for i, j := range got {
					ids[i] = j.ID
					outs[i] = queue.Outcome{ID: j.ID, Attempt: j.Attempt, State: queue.StateCompleted, Result: []byte(`1`)}
					mu.Lock()
					if prev, dup := seen[j.ID]; dup {
						errs <- fmt.Errorf("job %s claimed by %s and %s", j.ID, prev, id)
					}
					seen[j.ID] = id
					mu.Unlock()
				}
				if err := a.ExtendLeases(c, id, ids, time.Minute); err != nil {
					errs <- err
					return
				}
				if n, err := a.Finish(c, id, outs); err != nil || n != len(outs) {
					errs <- fmt.Errorf("Finish by %s applied %d of %d: %v", id, n, len(outs), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != total {
		t.Fatalf("claimed %d distinct jobs of %d", len(seen), total)
	}
	stats, err := a.Stats(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].State != queue.StateCompleted || stats[0].Count != total {
		t.Errorf("Stats = %+v, want %d completed", stats, total)
	}
}

// A claim takes the highest priorities first, oldest first within one, and
// goes on to lower priorities; rows another transaction holds are skipped,
// not waited for.
func TestClaimAcrossPrioritiesSkipsLocked(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	var order []queue.NewJob
	for _, p := range []int16{5, 5, 0, 0, -3, -3} {
		j := job("prio", p)
		order = append(order, j)
		if err := a.Insert(c, []queue.NewJob{j}); err != nil { // one by one: distinct run_at
			t.Fatal(err)
		}
	}
	// Another transaction holds the first priority-5 job.
	tx, err := a.DB().BeginTx(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var locked string
	if err := tx.QueryRowContext(c, `SELECT id FROM tasq_jobs WHERE id = ? FOR UPDATE`, order[0].ID.String()).Scan(&locked); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	got, err := a.Claim(c, "prio", "w", 4, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(began); el > 5*time.Second {
		t.Errorf("Claim took %v: it waited for the locked row", el)
	}
	want := []uuid.UUID{order[1].ID, order[2].ID, order[3].ID, order[4].ID}
	if len(got) != len(want) {
		t.Fatalf("claimed %d jobs, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Errorf("claim %d: got priority %d job %s, want %s", i, got[i].Priority, got[i].ID, want[i])
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	rest, err := a.Claim(c, "prio", "w", 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 2 || rest[0].ID != order[0].ID || rest[1].ID != order[5].ID {
		t.Errorf("after the lock went: %d jobs, want the priority-5 job then the last -3 one", len(rest))
	}
}

// Batches beyond one statement's limits are several INSERTs in one
// transaction: all or nothing.
func TestLargeBatchIsAtomic(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	big := make([]queue.NewJob, 2500)
	for i := range big {
		big[i] = job("big", 0)
	}
	if err := a.Insert(c, big); err != nil {
		t.Fatal(err)
	}
	bad := make([]queue.NewJob, 1500)
	for i := range bad {
		bad[i] = job("big", 0)
	}
	bad[1400].ID = big[0].ID // duplicate key in the second statement
	if err := a.Insert(c, bad); err == nil {
		t.Fatal("a batch with a duplicate ID was accepted")
	}
	if _, err := a.GetJob(c, bad[0].ID); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("first job of a failed batch: %v, want ErrJobNotFound", err)
	}
	stats, err := a.Stats(c)
	if err != nil || len(stats) != 1 || stats[0].Count != 2500 {
		t.Errorf("Stats = %+v, %v; want the 2500 jobs of the good batch only", stats, err)
	}
	// A large batch also goes through InsertTx.
	tx, err := a.DB().BeginTx(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.InsertTx(c, tx, bad[:1200]); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetJob(c, bad[0].ID); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("job of a rolled-back InsertTx: %v, want ErrJobNotFound", err)
	}
}

func TestInsertTxRefusesOtherTypes(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	for _, tx := range []any{nil, (*sql.Tx)(nil), a.DB(), struct{}{}} {
		if err := a.InsertTx(c, tx, []queue.NewJob{job("tx", 0)}); !errors.Is(err, queue.ErrTxUnsupported) {
			t.Errorf("InsertTx(%T) = %v, want ErrTxUnsupported", tx, err)
		}
	}
	bad := job("tx", 0)
	bad.Payload = []byte(`{not json`)
	if err := a.Insert(c, []queue.NewJob{bad}); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Errorf("Insert with a payload that is not JSON = %v, want ErrInvalidConfig", err)
	}
}

// Times come from the database clock in UTC, whatever the session time zone
// and the pool's parseTime/loc; error history entries carry readable times.
func TestTimesAreUTC(t *testing.T) {
	c := ctx(t)
	dsn := testmysql.NewDatabase(t)
	q := url.Values{"parseTime": {"true"}, "loc": {"Etc/GMT+5"}, "time_zone": {"'+09:00'"}}
	db, err := sql.Open("mysql", dsn+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := mysql.NewFromDB(c, db)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	j := job("time", 0)
	before := time.Now()
	if err := a.Insert(c, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	got, err := a.Claim(c, "time", "w", 1, 10*time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if d := got[0].DispatchedAt.Sub(before).Abs(); d > 5*time.Second {
		t.Errorf("DispatchedAt %v is %v away from the insert at %v", got[0].DispatchedAt, d, before)
	}
	if _, err := a.Finish(c, "w", []queue.Outcome{{ID: j.ID, Attempt: 1, State: queue.StateRetryable, Error: "once", Delay: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	info, err := a.GetJob(c, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := info.RunAt.Sub(before.Add(time.Hour)).Abs(); d > 5*time.Second {
		t.Errorf("RunAt %v, want an hour after %v", info.RunAt, before)
	}
	if len(info.Errors) != 1 || info.Errors[0].Attempt != 1 || info.Errors[0].At.Sub(before).Abs() > 5*time.Second {
		t.Errorf("error history %+v, want one entry of attempt 1 at about %v", info.Errors, before)
	}
	if info.AttemptedAt == nil || info.AttemptedAt.Sub(before).Abs() > 5*time.Second || info.AttemptedBy != "w" {
		t.Errorf("attempted at %v by %q", info.AttemptedAt, info.AttemptedBy)
	}
	list, err := a.ListJobs(c, queue.ListFilter{Since: before.Add(-5 * time.Second)})
	if err != nil || len(list) != 1 {
		t.Errorf("ListJobs(Since just before) = %d jobs, %v; want 1", len(list), err)
	}
	list, err = a.ListJobs(c, queue.ListFilter{Since: before.Add(time.Minute)})
	if err != nil || len(list) != 0 {
		t.Errorf("ListJobs(Since a minute later) = %d jobs, %v; want 0", len(list), err)
	}
}

// One Finish call writes several outcomes in one statement; stale ones are
// left out of the count.
func TestFinishBatch(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	jobs := []queue.NewJob{job("fin", 0), job("fin", 0), job("fin", 0), job("fin", 0)}
	if err := a.Insert(c, jobs); err != nil {
		t.Fatal(err)
	}
	got, err := a.Claim(c, "fin", "w", 4, time.Minute)
	if err != nil || len(got) != 4 {
		t.Fatalf("Claim = %d, %v", len(got), err)
	}
	n, err := a.Finish(c, "w", []queue.Outcome{
		{ID: jobs[0].ID, Attempt: 1, State: queue.StateCompleted, Result: []byte(`{"r":[1,2]}`)},
		{ID: jobs[1].ID, Attempt: 1, State: queue.StateFailed, Error: `quote " and backslash \`},
		{ID: jobs[2].ID, Attempt: 1, State: queue.StateScheduled, Delay: time.Hour},
		{ID: jobs[3].ID, Attempt: 2, State: queue.StateCompleted}, // stale attempt number
		{ID: uuid.New(), Attempt: 1, State: queue.StateCompleted}, // no such job
	})
	if err != nil || n != 3 {
		t.Fatalf("Finish = %d, %v; want 3 applied", n, err)
	}
	want := map[uuid.UUID]queue.JobState{jobs[0].ID: queue.StateCompleted, jobs[1].ID: queue.StateFailed,
		jobs[2].ID: queue.StateScheduled, jobs[3].ID: queue.StateRunning}
	for id, st := range want {
		info, err := a.GetJob(c, id)
		if err != nil {
			t.Fatal(err)
		}
		if info.State != st {
			t.Errorf("job %s is %s, want %s", id, info.State, st)
		}
	}
	if info, _ := a.GetJob(c, jobs[0].ID); string(info.Result) != `{"r": [1, 2]}` && string(info.Result) != `{"r":[1,2]}` {
		t.Errorf("result = %s", info.Result)
	}
	if info, _ := a.GetJob(c, jobs[1].ID); info.LastError() != `quote " and backslash \` || info.FinishedAt == nil {
		t.Errorf("failed job: error %q, finished %v", info.LastError(), info.FinishedAt)
	}
	if info, _ := a.GetJob(c, jobs[2].ID); info.Attempt != 0 || time.Until(info.RunAt) < 50*time.Minute {
		t.Errorf("handed back as scheduled: attempt %d, run at %v; want 0 and an hour from now", info.Attempt, info.RunAt)
	}
	if _, err := a.Finish(c, "w", []queue.Outcome{{ID: jobs[3].ID, Attempt: 1, State: queue.StateRunning}}); err == nil {
		t.Error("Finish accepted an outcome in state running")
	}
}

// Jobs inserted through an Adapter wake the workers subscribed to it.
func TestInProcessWakeups(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	sub, cancel := context.WithCancel(c)
	ch, err := a.Subscribe(sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Insert(c, []queue.NewJob{job("wake", 0)}); err != nil {
		t.Fatal(err)
	}
	select {
	case q := <-ch:
		if q != "wake" {
			t.Errorf("woken for %q, want wake", q)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up after Insert")
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel stayed open after its context ended")
		}
	}
}
