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
	childIDEnv  = "TASQ_TEST_CHILD_ID"
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
	cfg := worker.Config{
		Queues: []string{"waiting"}, LeaseDuration: time.Second, ID: childID, LeaderTTL: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if id := os.Getenv(childIDEnv); id != "" {
		// A worker of a fleet (the leader test): its own ID, a short term.
		cfg.ID, cfg.LeaderTTL, cfg.MaintenanceInterval = id, leaderTTL, 50*time.Millisecond
	}
	w, err := worker.New(a, reg, cfg)
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

// A finished job is finished once, by the execution that holds it: the
// outcome of an execution whose lease expired cannot overwrite the newer
// execution's, whichever worker writes it and whichever token it names, and
// the heartbeat tells the stale worker that its lease is lost.
func TestStaleAttemptCannotOverwriteNewerOne(t *testing.T) {
	e := newEnv(t)
	id, err := e.client.Dispatch(e.ctx, &SendEmail{To: "x"})
	if err != nil {
		t.Fatal(err)
	}
	a := e.adapter
	claim := func(workerID string) *queue.Job {
		t.Helper()
		jobs, err := a.Claim(e.ctx, queue.ClaimRequest{Queue: "emails", WorkerID: workerID, Limit: 10, Lease: time.Minute})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("claim by %s: %v, %d jobs; want 1", workerID, err, len(jobs))
		}
		return jobs[0]
	}
	finish := func(workerID string, o queue.Outcome) int {
		t.Helper()
		n, err := a.Finish(e.ctx, workerID, []queue.Outcome{o})
		if err != nil {
			t.Fatalf("Finish by %s: %v", workerID, err)
		}
		return n
	}
	first := claim("worker-a")
	if first.Attempt != 1 || first.Token <= 0 {
		t.Fatalf("claim A: attempt %d token %d; want attempt 1 and a positive token", first.Attempt, first.Token)
	}
	// Worker A stalls; its lease runs out and the job is rescued and claimed by B.
	if _, err := e.pool.Exec(e.ctx, `UPDATE tasq_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, rescued, err := a.Maintain(e.ctx); err != nil || rescued != 1 {
		t.Fatalf("Maintain: rescued %d, err %v", rescued, err)
	}
	// Before anyone reclaims it, A's outcome is already refused, and A's
	// heartbeat learns that its lease is lost.
	if n := finish("worker-a", queue.Completed(first, []byte(`"A"`))); n != 0 {
		t.Fatalf("stale finish on an available job applied %d, want 0", n)
	}
	if lost, err := a.ExtendLeases(e.ctx, "worker-a", []queue.Lease{first.Lease()}, time.Minute); err != nil ||
		len(lost) != 1 || lost[0] != first.Lease() {
		t.Fatalf("ExtendLeases by A after the rescue: lost %v, err %v; want A's lease back as lost", lost, err)
	}
	second := claim("worker-b")
	if second.Attempt != 2 || second.Token <= first.Token {
		t.Fatalf("claim B: attempt %d token %d; want attempt 2 and a token above A's %d", second.Attempt, second.Token, first.Token)
	}
	if n := finish("worker-a", queue.Failed(first, errors.New("A gave up"))); n != 0 {
		t.Fatalf("stale worker A overwrote B's execution")
	}
	// B's token, written by another worker: refused too.
	if n := finish("worker-a", queue.Completed(second, nil)); n != 0 {
		t.Fatalf("worker A finished worker B's execution")
	}
	// A's renewal is refused while B's goes through.
	if lost, err := a.ExtendLeases(e.ctx, "worker-a", []queue.Lease{first.Lease(), second.Lease()}, time.Minute); err != nil || len(lost) != 2 {
		t.Fatalf("ExtendLeases by A while B holds the job: lost %v, err %v; want both leases reported lost", lost, err)
	}
	if lost, err := a.ExtendLeases(e.ctx, "worker-b", []queue.Lease{second.Lease()}, time.Minute); err != nil || len(lost) != 0 {
		t.Fatalf("ExtendLeases by B: lost %v, err %v; want none lost", lost, err)
	}
	if n := finish("worker-b", queue.Completed(second, []byte(`"B"`))); n != 1 {
		t.Fatalf("B's finish applied %d, want 1", n)
	}
	if n := finish("worker-b", queue.Failed(second, errors.New("again"))); n != 0 {
		t.Fatalf("a completed job was finished twice")
	}
	j := e.job(id)
	if j.State != queue.StateCompleted || string(j.Result) != `"B"` || j.Token != second.Token {
		t.Errorf("job %s result %s token %d, want completed with B's result under B's token %d", j.State, j.Result, j.Token, second.Token)
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
