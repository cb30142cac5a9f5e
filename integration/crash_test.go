package integration

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

const (
	childEnv    = "TASQ_TEST_CHILD_WORKER"
	childDSNEnv = "TASQ_TEST_CHILD_DSN"
	childID     = "doomed-worker"
)

// childMain runs a worker in a child process until it is killed.
func childMain() int {
	ctx := context.Background()
	a, err := postgres.New(ctx, os.Getenv(childDSNEnv))
	if err != nil {
		os.Stderr.WriteString(err.Error())
		return 2
	}
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &Waiter{})
	w, err := worker.New(a, reg, worker.Config{
		Queues: []string{"waiting"}, LeaseDuration: time.Second, ID: childID,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		os.Stderr.WriteString(err.Error())
		return 2
	}
	_ = w.Run(ctx)
	return 0
}

// A worker killed with SIGKILL mid-job loses nothing: after its lease
// expires the job is rescued and another worker runs it.
func TestKilledWorkersJobRunsAgain(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	close(p.release) // in this process the task finishes at once; in the child it blocks
	id, err := e.client.Dispatch(e.ctx, &Waiter{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", childDSNEnv+"="+e.dsn)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	waitFor(t, 30*time.Second, "the child worker to claim the job", func() bool {
		j := e.job(id)
		return j.State == queue.StateRunning && j.AttemptedBy == childID
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	e.startWorker(registry(t), worker.Config{Queues: []string{"waiting"}})
	j := e.waitState(id, queue.StateCompleted, 15*time.Second)
	if j.Attempt != 2 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "lease expired: worker "+childID) {
		t.Errorf("rescued job: attempt %d errors %+v; want attempt 2 and the lease-expiry note", j.Attempt, j.Errors)
	}
	if seen, _ := p.snapshot(); len(seen) != 1 || seen[0].Attempt != 1 {
		t.Errorf("in this process the job ran %+v, want once as attempt 1", seen)
	}
}

// A finished job is finished once: the outcome of an attempt whose lease
// expired cannot overwrite the newer attempt's.
func TestStaleAttemptCannotOverwriteNewerOne(t *testing.T) {
	e := newEnv(t)
	id, err := e.client.Dispatch(e.ctx, &SendEmail{To: "x"})
	if err != nil {
		t.Fatal(err)
	}
	a := e.adapter
	first, err := a.Claim(e.ctx, "emails", "worker-a", 10, time.Minute)
	if err != nil || len(first) != 1 || first[0].Attempt != 1 {
		t.Fatalf("claim A: %v %+v", err, first)
	}
	// Worker A stalls; its lease runs out and the job is rescued and claimed by B.
	if _, err := e.pool.Exec(e.ctx, `UPDATE tasq_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, rescued, err := a.Maintain(e.ctx); err != nil || rescued != 1 {
		t.Fatalf("Maintain: rescued %d, err %v", rescued, err)
	}
	// Before anyone reclaims it, A's outcome is already refused.
	if n, err := a.Finish(e.ctx, "worker-a", []queue.Outcome{{ID: id, Attempt: 1, State: queue.StateCompleted, Result: []byte(`"A"`)}}); err != nil || n != 0 {
		t.Fatalf("stale finish on an available job applied %d (err %v), want 0", n, err)
	}
	second, err := a.Claim(e.ctx, "emails", "worker-b", 10, time.Minute)
	if err != nil || len(second) != 1 || second[0].Attempt != 2 {
		t.Fatalf("claim B: %v %+v", err, second)
	}
	if n, _ := a.Finish(e.ctx, "worker-a", []queue.Outcome{{ID: id, Attempt: 1, State: queue.StateFailed, Error: "A gave up"}}); n != 0 {
		t.Fatalf("stale worker A overwrote attempt 2")
	}
	// Same attempt number, other worker: refused too.
	if n, _ := a.Finish(e.ctx, "worker-a", []queue.Outcome{{ID: id, Attempt: 2, State: queue.StateCompleted}}); n != 0 {
		t.Fatalf("worker A finished worker B's attempt")
	}
	if n, err := a.Finish(e.ctx, "worker-b", []queue.Outcome{{ID: id, Attempt: 2, State: queue.StateCompleted, Result: []byte(`"B"`)}}); err != nil || n != 1 {
		t.Fatalf("B's finish applied %d (err %v), want 1", n, err)
	}
	if n, _ := a.Finish(e.ctx, "worker-b", []queue.Outcome{{ID: id, Attempt: 2, State: queue.StateFailed, Error: "again"}}); n != 0 {
		t.Fatalf("a completed job was finished twice")
	}
	j := e.job(id)
	if j.State != queue.StateCompleted || string(j.Result) != `"B"` {
		t.Errorf("job %s result %s, want completed with B's result", j.State, j.Result)
	}
}

// The heartbeat keeps a long job's lease alive: it is not rescued while its
// worker lives, however long it runs.
func TestHeartbeatKeepsLongJobsLeased(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, _ := e.client.Dispatch(e.ctx, &Waiter{Key: key})
	r := e.startWorker(registry(t), worker.Config{Queues: []string{"waiting"}, LeaseDuration: 300 * time.Millisecond})
	<-p.started
	time.Sleep(time.Second) // more than three lease lengths
	j := e.job(id)
	if j.State != queue.StateRunning || j.Attempt != 1 || len(j.Errors) != 0 {
		t.Fatalf("long job: state %s attempt %d errors %+v; want still running its first attempt", j.State, j.Attempt, j.Errors)
	}
	close(p.release)
	e.waitState(id, queue.StateCompleted, 10*time.Second)
	if st := r.Stats(); st.Stale != 0 {
		t.Errorf("stale outcomes %d", st.Stale)
	}
}

// When the last attempt is lost to a dead worker, the next worker runs the
// Failed hook with ErrLeaseExpired and fails the job; Handle does not run again.
func TestLostLastAttemptRunsFailed(t *testing.T) {
	e := newEnv(t)
	key, p := newProbe(t)
	id, _ := e.client.Dispatch(e.ctx, &Flaky{Key: key})
	if _, err := e.pool.Exec(e.ctx, `UPDATE tasq_jobs SET state = 'running', attempt = 3, attempted_by = 'dead',
		lease_expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	e.startWorker(registry(t), worker.Config{Queues: []string{"flaky"}})
	j := e.waitState(id, queue.StateFailed, 10*time.Second)
	seen, failed := p.snapshot()
	if len(seen) != 0 || len(failed) != 1 || !errors.Is(failed[0], queue.ErrLeaseExpired) {
		t.Errorf("Handle ran %d times, Failed got %v; want 0 and one ErrLeaseExpired", len(seen), failed)
	}
	if len(j.Errors) != 2 {
		t.Errorf("errors %+v, want the lease note and the final failure", j.Errors)
	}
}
