package integration

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// leaderTTL is the fleet's maintenance term in the leader test.
const leaderTTL = 600 * time.Millisecond

// Several worker processes elect one maintenance leader; when it is killed
// with SIGKILL (no resign), another takes over within about 1⅓ terms, and
// maintenance goes on: a delayed job dispatched afterwards is promoted.
func TestLeaderIsReplacedWhenKilled(t *testing.T) {
	e := newEnv(t)
	children := map[string]*exec.Cmd{}
	for _, id := range []string{"fleet-1", "fleet-2", "fleet-3"} {
		c := exec.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), childEnv+"=1", childDSNEnv+"="+e.dsn, childIDEnv+"="+id)
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		children[id] = c
	}
	var first string
	waitFor(t, 30*time.Second, "a leader among the fleet", func() bool {
		id, _, err := e.adapter.Leader(e.ctx)
		first = id
		return err == nil && children[id] != nil
	})
	// Exactly one term exists at a time, and it stays with its holder while
	// it lives (no flapping): watch it for two terms.
	until := time.Now().Add(2 * leaderTTL)
	for time.Now().Before(until) {
		if id, _, _ := e.adapter.Leader(e.ctx); id != first {
			t.Fatalf("the lead moved from %s to %q while %s was alive", first, id, first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := children[first].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = children[first].Wait()
	var next string
	waitFor(t, 10*time.Second, "another leader", func() bool {
		id, _, err := e.adapter.Leader(e.ctx)
		next = id
		return err == nil && id != "" && id != first
	})
	took := time.Since(killed)
	t.Logf("leader %s killed; %s took over after %v (term %v)", first, next, took, leaderTTL)
	if took > leaderTTL*4/3+500*time.Millisecond {
		t.Errorf("takeover took %v; the bound is about 1⅓ terms (%v)", took, leaderTTL*4/3)
	}
	// Maintenance goes on under the new leader: a delayed job is promoted
	// and claimed by the fleet.
	key, p := newProbe(t)
	close(p.release)
	id, err := e.client.Dispatch(e.ctx, &Waiter{Key: key}, queue.Delay(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the delayed job promoted and claimed", func() bool {
		st := e.job(id).State
		return st == queue.StateRunning || st == queue.StateCompleted
	})
}

// The leader's retention removes finished jobs past their age, per state and
// per queue, and keeps what it must: a queue kept for ever, and live jobs.
func TestRetentionRemovesExpiredJobs(t *testing.T) {
	e := newEnv(t)
	key, _ := newProbe(t)
	done, err := e.client.Dispatch(e.ctx, &Ping{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := e.client.Dispatch(e.ctx, &SendEmail{Key: key, To: "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	later, err := e.client.Dispatch(e.ctx, &Ping{Key: key}, queue.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w := e.startWorker(registry(t), worker.Config{Queues: []string{"mixed", "emails"}, LeaderTTL: time.Second, Retention: worker.Retention{
		Completed: 300 * time.Millisecond, Interval: 50 * time.Millisecond,
		Queues: map[string]worker.RetentionAges{"emails": {Completed: queue.KeepForever}},
	}})
	waitFor(t, 15*time.Second, "the completed ping removed by retention", func() bool {
		return e.count(`id = $1`, done) == 0
	})
	if e.job(kept).State != queue.StateCompleted {
		t.Errorf("the job of a queue kept for ever is gone or not completed")
	}
	if e.job(later).State != queue.StateScheduled {
		t.Errorf("a scheduled job was touched by retention")
	}
	// The row is gone once the purge commits; the count follows when the
	// Purge call returns.
	waitFor(t, 5*time.Second, "the leader's purge counted", func() bool { s := w.Stats(); return s.Leader && s.Purged >= 1 })
}
