package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// exactlyOnceJobs is how many transactional jobs the exactly-once scenario
// runs, in the short suite as in the long one.
const exactlyOnceJobs = 10000

// effectsSQL creates the table in which TxJob leaves its effect. It has no
// unique constraint on purpose: a second effect of one job must show, not
// fail.
const effectsSQL = `
CREATE TABLE chaos_effects (
    job_id uuid   NOT NULL,
    worker text   NOT NULL,
    token  bigint
);
CREATE INDEX chaos_effects_job_idx ON chaos_effects (job_id)`

// TxJob is the transactional chaos task: it records its execution as Job
// does, then, in one transaction of its own, writes its effect (a row of
// chaos_effects), waits 0-20 ms, completes its job with queue.CompleteTx and
// commits. The effect and the completion commit together or not at all.
type TxJob struct {
	queue.TaskBase
	N int

	rec *recorder // set by the worker's Resolver before each attempt
}

// Kind names the task "chaos_tx".
func (*TxJob) Kind() string { return "chaos_tx" }

// Config is Job's.
func (*TxJob) Config() queue.Config { return (*Job)(nil).Config() }

// Handle does the transactional work and returns N (which CompleteTx
// stored as the result already).
func (j *TxJob) Handle(ctx context.Context) (int, error) {
	if j.rec == nil {
		return 0, errors.New("chaos: TxJob ran without its recorder; the worker needs Config.Resolver")
	}
	m := j.Metadata()
	if _, err := j.rec.pool.Exec(ctx, recordSQL, m.ID, m.Attempt, j.rec.worker); err != nil {
		return 0, fmt.Errorf("chaos: record the execution of job %s: %w", m.ID, err)
	}
	tx, err := j.rec.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `INSERT INTO chaos_effects (job_id, worker, token)
SELECT $1, $2, (SELECT claim_token FROM tasq_jobs WHERE id = $1 AND state = 'running' AND attempted_by = $2)`, m.ID, j.rec.worker); err != nil {
		return 0, err
	}
	t := time.NewTimer(rand.N(21 * time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
	if err := queue.CompleteTxWithResult(ctx, tx, j.N); err != nil {
		return 0, err
	}
	return j.N, tx.Commit(ctx)
}

// testExactlyOnce runs 10,000 transactional jobs (TxJob) while it SIGKILLs
// workers and restarts PostgreSQL (fast and immediate, on a cluster of its
// own), alternately. Besides what every scenario checks, each job's effect
// must exist exactly once, written by the execution that completed it:
// none missing, none doubled, however many executions a fault repeated.
func testExactlyOnce(t *testing.T) {
	c := startCluster(t)
	r := newRunOf(t, "once", c.dsn, exactlyOnceJobs, func(n int) any { return &TxJob{N: n} })
	if _, err := r.pool.Exec(r.ctx, effectsSQL); err != nil {
		t.Fatalf("create chaos_effects: %v", err)
	}
	r.faults.what = "kills and restarts"
	r.startWorkers()
	modes := []string{"fast", "immediate"}
	var kills, restarts int
	for began := time.Now(); r.chaosGoesOn(began); {
		r.pause(300*time.Millisecond, 600*time.Millisecond)
		if r.faults.count%2 == 0 {
			live := r.live()
			victim := live[rand.IntN(len(live))]
			at := r.dbNow()
			victim.kill()
			r.faults.windows = append(r.faults.windows, window{worker: victim.id, from: at, to: never})
			r.startWorker()
			kills++
		} else {
			from := r.dbNow()
			if err := c.restart(r.ctx, modes[restarts%len(modes)]); err != nil {
				t.Fatal(err)
			}
			r.faults.windows = append(r.faults.windows, window{from: from, to: r.dbNow().Add(r.plan.LeaseDuration)})
			restarts++
		}
		r.faults.count++
	}
	t.Logf("figures %s: %d SIGKILLs, %d PostgreSQL restarts", r.name, kills, restarts)
	r.drainAndVerify()

	// Exactly once: one effect per job, by the claim that completed it.
	var missing, doubled, foreign int
	var examples []string
	err := r.pool.QueryRow(r.ctx, `
SELECT (SELECT count(*) FROM tasq_jobs j WHERE NOT EXISTS (SELECT 1 FROM chaos_effects e WHERE e.job_id = j.id)),
       (SELECT count(*) FROM (SELECT job_id FROM chaos_effects GROUP BY job_id HAVING count(*) > 1) AS d),
       (SELECT count(*) FROM chaos_effects e JOIN tasq_jobs j ON j.id = e.job_id
         WHERE e.token IS DISTINCT FROM j.claim_token OR e.worker IS DISTINCT FROM j.attempted_by),
       coalesce((SELECT array_agg(x) FROM (SELECT e.job_id::text || ' x' || count(*) AS x FROM chaos_effects e
         GROUP BY e.job_id HAVING count(*) > 1 LIMIT 5) AS s), '{}')`).Scan(&missing, &doubled, &foreign, &examples)
	if err != nil {
		t.Fatalf("count the effects: %v", err)
	}
	var effects, executions int
	if err := r.pool.QueryRow(r.ctx, `SELECT (SELECT count(*) FROM chaos_effects), (SELECT count(*) FROM chaos_runs)`).Scan(&effects, &executions); err != nil {
		t.Fatal(err)
	}
	t.Logf("figures %s: %d jobs, %d executions, %d effects: %d missing, %d doubled, %d by another claim than the completing one",
		r.name, len(r.ids), executions, effects, missing, doubled, foreign)
	if missing > 0 || doubled > 0 || foreign > 0 {
		t.Errorf("BROKEN (exactly once): %d jobs without their effect, %d with more than one (e.g. %s), %d effects not written by the completing claim",
			missing, doubled, strings.Join(examples, ", "), foreign)
	}
	if executions <= len(r.ids) {
		t.Logf("note: no execution was repeated (%d executions for %d jobs); the faults disturbed no running job this time", executions, len(r.ids))
	}
}
