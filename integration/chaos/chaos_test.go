package chaos

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// TestChaos runs each scenario on a database of its own, one after the
// other (they share the machine's cores, and a starved worker would lose
// its leases for reasons no scenario intends). Each one dispatches the
// plan's jobs, runs the plan's worker processes, injects its faults for at
// most plan.Chaos, lets the workers drain the queue, and checks:
//   - nothing lost: every job completed (or is cancelled where the operator
//     left it cancelled), with its own N as result;
//   - finished once, by the holder: each job completed exactly once, from
//     its running claim, by the worker and token of an execution recorded
//     under that claim, and nothing wrote to it afterwards;
//   - nothing stuck: no job left available, running, retryable or scheduled;
//   - duplicate executions bounded: every execution that did not complete
//     its job belongs to a claim that a fault disturbed.
func TestChaos(t *testing.T) {
	t.Run("sigkill", testSIGKILL)
	t.Run("terminate_backend", testTerminateBackend)
	t.Run("sigstop", testSIGSTOP)
	t.Run("cancel_retry", testCancelRetry)
	t.Run("pg_restart", testPGRestart)
	t.Run("exactly_once", testExactlyOnce)
}

// testSIGKILL kills a random worker every 300-500 ms and starts a
// replacement with a new ID. The killed worker's claims come back after
// their leases expire; each can have run once in the dead worker.
func testSIGKILL(t *testing.T) {
	r := newRun(t, "kill", testpg.NewDatabase(t))
	r.faults.what = "kills"
	r.startWorkers()
	for began := time.Now(); r.chaosGoesOn(began); {
		r.pause(300*time.Millisecond, 500*time.Millisecond)
		live := r.live()
		victim := live[rand.IntN(len(live))]
		at := r.dbNow()
		victim.kill()
		r.faults.count++
		// The dead worker's claims held at the kill are disturbed for good.
		r.faults.windows = append(r.faults.windows, window{worker: victim.id, from: at, to: never})
		r.startWorker()
	}
	r.drainAndVerify()
}

// terminateSQL terminates every connection of the worker children to the
// scenario's database, and says when and how many.
const terminateSQL = `
SELECT clock_timestamp(), count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE '` + workerAppPrefix + `%' AND pid <> pg_backend_pid()`

// testTerminateBackend terminates every worker connection every ~200 ms.
// A claim held at a termination can lose its lease (renewals fail on dead
// connections until the pool has replaced them, up to a lease later) or
// its outcome, and run again.
func testTerminateBackend(t *testing.T) {
	r := newRun(t, "term", testpg.NewDatabase(t))
	r.faults.what = "termination rounds"
	r.startWorkers()
	backends := 0
	for began := time.Now(); r.chaosGoesOn(began); {
		var at time.Time
		var n int
		if err := r.pool.QueryRow(r.ctx, terminateSQL).Scan(&at, &n); err != nil {
			t.Fatalf("terminate the worker connections: %v", err)
		}
		if n > 0 {
			r.faults.count++
			backends += n
			r.faults.windows = append(r.faults.windows, window{from: at, to: at.Add(r.plan.LeaseDuration)})
		}
		r.pause(150*time.Millisecond, 250*time.Millisecond)
	}
	t.Logf("figures %s: %d worker connections terminated in %d rounds", r.name, backends, r.faults.count)
	r.drainAndVerify()
}

// testSIGSTOP freezes random workers, each for longer than a lease, then
// lets them go on; the freezes overlap, but one worker always runs. A
// frozen worker's claims are rescued and run elsewhere meanwhile; when it
// wakes, its executions' outcomes must be refused.
func testSIGSTOP(t *testing.T) {
	r := newRun(t, "stop", testpg.NewDatabase(t))
	r.faults.what = "stops"
	r.startWorkers()
	var (
		mu     sync.Mutex
		frozen = map[*child]bool{}
		thaws  sync.WaitGroup
	)
	for began := time.Now(); r.chaosGoesOn(began); {
		r.pause(500*time.Millisecond, 900*time.Millisecond)
		mu.Lock()
		var candidates []*child
		for _, c := range r.live() {
			if !frozen[c] {
				candidates = append(candidates, c)
			}
		}
		if len(candidates) <= 1 {
			mu.Unlock()
			continue
		}
		victim := candidates[rand.IntN(len(candidates))]
		frozen[victim] = true
		mu.Unlock()
		from := r.dbNow()
		if err := victim.signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		r.faults.count++
		thaws.Go(func() {
			time.Sleep(r.plan.StopFor) // the fault itself, not a wait for a condition
			err := victim.signal(syscall.SIGCONT)
			to, cerr := r.dbClock()
			if cerr != nil {
				to = never // the window can only grow
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
			}
			delete(frozen, victim)
			r.faults.windows = append(r.faults.windows, window{worker: victim.id, from: from, to: to})
		})
	}
	thaws.Wait()
	r.drainAndVerify()
}

// testCancelRetry has an operator cancel random running jobs, and retry
// most of them at once (queue.JobEditor); the others stay cancelled. The
// cancelled executions still run to their end; their outcomes must be
// refused, and a job left cancelled must stay cancelled.
func testCancelRetry(t *testing.T) {
	r := newRun(t, "cancel", testpg.NewDatabase(t))
	r.faults.what = "cancels"
	r.faults.cancelledClaims = true
	var editor queue.JobEditor = r.adapter
	keep := max(1, len(r.ids)/100) // jobs left cancelled, at most
	r.startWorkers()
	for began := time.Now(); r.chaosGoesOn(began); {
		for _, id := range r.pickRunning(2) {
			err := editor.CancelJob(r.ctx, id)
			if errors.Is(err, queue.ErrJobState) {
				continue // it finished meanwhile
			}
			if err != nil {
				t.Fatalf("CancelJob(%s): %v", id, err)
			}
			r.faults.count++
			r.faults.cancels++
			if len(r.faults.left) < keep && rand.IntN(8) == 0 {
				r.faults.left[id] = true
				continue
			}
			if err := editor.RetryJob(r.ctx, id); err != nil {
				// Nothing but the operator may touch a cancelled job.
				t.Errorf("BROKEN: job %s, cancelled a moment ago, cannot be retried: %v", id, err)
				continue
			}
			r.faults.retries++
		}
		r.pause(20*time.Millisecond, 60*time.Millisecond)
	}
	r.drainAndVerify()
}

// pickRunning returns up to n random running jobs.
func (r *run) pickRunning(n int) []uuid.UUID {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	rows, err := r.pool.Query(ctx, `SELECT id FROM tasq_jobs WHERE state = 'running' ORDER BY random() LIMIT $1`, n)
	if err != nil {
		r.t.Fatalf("pick running jobs: %v", err)
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			r.t.Fatalf("pick running jobs: %v", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		r.t.Fatalf("pick running jobs: %v", err)
	}
	return ids
}
