package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// The yardstick: the bare SQL of claim and complete, batched, on one
// connection, with no Go worker machinery: how fast this database works
// jobs at all. TasQ's burn-down of the same -n jobs on the same (reset)
// table is then reported as a fraction of it.

// yardstickClaimSQL is the adapter's claim (adapters/postgres claimSQL)
// reduced to its core: the same CTE, order, SKIP LOCKED and SET list, no
// paused-queue check and no kind filter, returning only what the complete
// needs.
const yardstickClaimSQL = `
WITH picked AS (
    SELECT id FROM tasq_jobs
    WHERE state = 'available' AND queue = $1
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE tasq_jobs AS j SET state = 'running', attempt = j.attempt + 1, claim_token = j.claim_token + 1,
    attempted_at = now(), attempted_by = 'yardstick', lease_expires_at = now() + interval '1 minute'
FROM picked
WHERE j.id = picked.id
RETURNING j.id`

// yardstickFinishSQL completes the claimed jobs by primary key.
const yardstickFinishSQL = `
UPDATE tasq_jobs SET state = 'completed', finished_at = now(), lease_expires_at = NULL
WHERE id = ANY($1::uuid[])`

// The second yardstick runs the adapter's own Claim and Finish, serially
// from one goroutine, batches of --yardstick-batch: it tells what the
// adapter's statements (and its Go encoding of them) cost apart from the
// worker's concurrency and machinery.

// yardstickResult is the yardstick's RESULT line (and TasQ's, with Ratio).
type yardstickResult struct {
	benchResult
	Batch      int     `json:"batch,omitempty"`
	RoundTrips int64   `json:"round_trips,omitempty"`
	Ratio      float64 `json:"ratio_to_yardstick,omitempty"`
	claimStats
	cpuUse
}

// cpuUse is the CPU seconds a phase used: this process (the bench and, in
// the burn-down, its worker), PostgreSQL's processes, and the machine.
type cpuUse struct {
	BenchCPU     float64 `json:"bench_cpu_s,omitempty"`
	PostgresCPU  float64 `json:"postgres_cpu_s,omitempty"`
	MachineBusy  float64 `json:"machine_busy_s,omitempty"`
	MachineTotal float64 `json:"machine_total_s,omitempty"`
}

// cpuMark is a snapshot for cpuUse.
type cpuMark struct{ self, pg, busy, total float64 }

func markCPU() cpuMark {
	var m cpuMark
	m.self, _ = procCPU(os.Getpid())
	m.pg, _ = postgresCPU()
	m.busy, m.total, _ = machineCPU()
	return m
}

func (m cpuMark) since() cpuUse {
	n := markCPU()
	return cpuUse{BenchCPU: n.self - m.self, PostgresCPU: n.pg - m.pg, MachineBusy: n.busy - m.busy, MachineTotal: n.total - m.total}
}

func (c cpuUse) String() string {
	if c.MachineTotal <= 0 {
		return ""
	}
	return fmt.Sprintf("  cpu: bench process %.2fs, postgres %.2fs, machine busy %.2fs of %.2fs (%.0f%%)",
		c.BenchCPU, c.PostgresCPU, c.MachineBusy, c.MachineTotal, 100*c.MachineBusy/c.MachineTotal)
}

// yardstick runs the bare-SQL loop over -n jobs, then TasQ's burn-down of
// -n jobs on the reset table, and prints both and the ratio.
func (b *bench) yardstick(ctx context.Context) error {
	n := b.f.n
	// Two SQL phases on the same table, reset between them: the bare
	// statements, then the adapter's Claim and Finish in the same loop.
	var ys yardstickResult
	for _, adapterSQL := range []bool{false, true} {
		if adapterSQL && !b.f.keepTable {
			if err := b.reset(ctx); err != nil {
				return err
			}
		}
		fmt.Fprintf(b.errw, "[tasq] yardstick: inserting %d jobs in batches of %d\n", n, b.f.batch)
		if _, err := b.insert(ctx, n); err != nil {
			return err
		}
		r, err := b.yardstickRun(ctx, n, adapterSQL)
		if err != nil {
			return err
		}
		if !adapterSQL {
			ys = r
			fmt.Fprintf(b.out, "yardstick:       %d jobs in %.2fs = %.0f jobs/s (bare claim + complete SQL, batches of %d, one connection, %d round trips)\n",
				r.Jobs, r.Seconds, r.JobsPerSec, r.Batch, r.RoundTrips)
		} else {
			r.Ratio = r.JobsPerSec / ys.JobsPerSec
			fmt.Fprintf(b.out, "adapter SQL:     %d jobs in %.2fs = %.0f jobs/s = %.2f of the yardstick (the adapter's Claim and Finish, same loop)\n",
				r.Jobs, r.Seconds, r.JobsPerSec, r.Ratio)
		}
		if c := r.cpuUse.String(); c != "" {
			fmt.Fprintln(b.out, c)
		}
		b.printJSON(r)
	}
	if !b.f.keepTable {
		if err := b.reset(ctx); err != nil {
			return err
		}
	}
	tq, err := b.yardstickTasq(ctx, n)
	if err != nil {
		return err
	}
	tq.Ratio = tq.JobsPerSec / ys.JobsPerSec
	fmt.Fprintf(b.out, "tasq burn-down:  %d jobs in %.2fs = %.0f jobs/s = %.2f of the yardstick (target >= 0.90)\n",
		tq.Jobs, tq.Seconds, tq.JobsPerSec, tq.Ratio)
	fmt.Fprintf(b.out, "  claims %d (%d empty), %.1f jobs/claim, claim mean %.2f ms (sum %.0f ms); finishes %d, %.1f jobs/finish, finish mean %.2f ms (sum %.0f ms); %.3f round trips/job\n",
		tq.Claims, tq.EmptyClaims, float64(tq.Claimed)/float64(max(tq.Claims, 1)), tq.ClaimMeanMS, tq.ClaimSumMS,
		tq.Finishes, float64(tq.Finished)/float64(max(tq.Finishes, 1)), tq.FinishMeanMS, tq.FinishSumMS,
		float64(tq.Claims+tq.Finishes)/float64(max(tq.Jobs, 1)))
	if c := tq.cpuUse.String(); c != "" {
		fmt.Fprintln(b.out, c)
	}
	b.printJSON(tq)
	return nil
}

func (b *bench) printJSON(v any) {
	if b.f.json {
		js, _ := json.Marshal(v)
		fmt.Fprintf(b.out, "RESULT %s\n", js)
	}
}

// yardstickRun claims up to --yardstick-batch jobs and completes them, on
// one connection, until n jobs are completed.
func (b *bench) yardstickRun(ctx context.Context, n int, adapterSQL bool) (yardstickResult, error) {
	conn, err := b.ad.Pool().Acquire(ctx)
	if err != nil {
		return yardstickResult{}, err
	}
	defer conn.Release()
	batch := b.f.scale.yardstickBatch
	ids := make([]pgtype.UUID, 0, batch)
	var done, trips int64
	mark := markCPU()
	start := time.Now()
	for done < int64(n) {
		ids = ids[:0]
		var err error
		if adapterSQL {
			ids, err = b.yardstickAdapterRound(ctx, ids, min(batch, n-int(done)))
		} else {
			ids, err = yardstickBareRound(ctx, conn.Conn(), ids, min(batch, n-int(done)))
		}
		if err != nil {
			return yardstickResult{}, err
		}
		trips += 2
		if len(ids) == 0 {
			return yardstickResult{}, fmt.Errorf("the yardstick found no job after %d of %d", done, n)
		}
		done += int64(len(ids))
	}
	el := time.Since(start)
	mode := "yardstick"
	if adapterSQL {
		mode = "yardstick-adapter-sql"
	}
	return yardstickResult{benchResult: benchResult{System: "yardstick", Mode: mode, Jobs: done, Seconds: el.Seconds(),
		JobsPerSec: float64(done) / el.Seconds()}, Batch: batch, RoundTrips: trips, cpuUse: mark.since()}, nil
}

// yardstickTasq is the burn-down (one worker, --concurrency) with an
// Observer, so that the claim and finish batches it achieved are reported.
func (b *bench) yardstickTasq(ctx context.Context, n int) (yardstickResult, error) {
	var since time.Time
	if err := b.ad.Pool().QueryRow(ctx, `SELECT now()`).Scan(&since); err != nil {
		return yardstickResult{}, err
	}
	fmt.Fprintf(b.errw, "[tasq] yardstick: inserting %d jobs for the burn-down\n", n)
	insertRate, err := b.insert(ctx, n)
	if err != nil {
		return yardstickResult{}, err
	}
	reg := queue.NewRegistry()
	if err := queue.Register(reg, benchNoop{}); err != nil {
		return yardstickResult{}, err
	}
	obs := &claimObserver{}
	w, err := worker.New(b.ad, reg, worker.Config{
		Queues: []string{benchQueue}, Concurrency: b.f.concurrency, MaxTasks: n, Observer: obs,
		Logger: slog.New(slog.NewTextHandler(b.errw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return yardstickResult{}, err
	}
	stop := make(chan struct{})
	go b.progress("yardstick burn-down", w, int64(n), stop)
	mark := markCPU()
	start := time.Now()
	err = w.Run(ctx)
	el := time.Since(start)
	use := mark.since()
	close(stop)
	if err != nil {
		return yardstickResult{}, err
	}
	var completed int64
	if err := b.ad.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE queue = $1 AND state = 'completed' AND finished_at >= $2`,
		benchQueue, since).Scan(&completed); err != nil {
		return yardstickResult{}, err
	}
	if completed != int64(n) {
		return yardstickResult{}, errors.New("not every job completed (interrupted?)")
	}
	st := obs.stats()
	return yardstickResult{benchResult: benchResult{System: "tasq", Mode: "yardstick-burn-down", Jobs: completed, Seconds: el.Seconds(),
		JobsPerSec: float64(completed) / el.Seconds(), InsertPerSec: insertRate, Concurrency: b.f.concurrency},
		RoundTrips: st.Claims + st.Finishes, claimStats: st, cpuUse: use}, nil
}

// yardstickBareRound claims up to limit jobs with the bare claim and
// completes them; it returns their IDs.
func yardstickBareRound(ctx context.Context, conn *pgx.Conn, ids []pgtype.UUID, limit int) ([]pgtype.UUID, error) {
	rows, err := conn.Query(ctx, yardstickClaimSQL, benchQueue, limit)
	if err != nil {
		return ids, fmt.Errorf("claim: %w", err)
	}
	for rows.Next() {
		var id pgtype.UUID
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return ids, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ids, fmt.Errorf("claim: %w", err)
	}
	if len(ids) == 0 {
		return ids, nil
	}
	if _, err := conn.Exec(ctx, yardstickFinishSQL, ids); err != nil {
		return ids, fmt.Errorf("complete: %w", err)
	}
	return ids, nil
}

// yardstickAdapterRound does the same with the adapter's Claim and Finish
// (plain completions, as a burn-down of no-op jobs gives).
func (b *bench) yardstickAdapterRound(ctx context.Context, ids []pgtype.UUID, limit int) ([]pgtype.UUID, error) {
	const worker = "yardstick"
	jobs, err := b.ad.Claim(ctx, queue.ClaimRequest{Queue: benchQueue, WorkerID: worker, Limit: limit, Lease: time.Minute})
	if err != nil {
		return ids, err
	}
	if len(jobs) == 0 {
		return ids, nil
	}
	outs := make([]queue.Outcome, len(jobs))
	for i, j := range jobs {
		outs[i] = queue.Completed(j, nil)
		ids = append(ids, pgtype.UUID{Bytes: j.ID, Valid: true})
	}
	applied, err := b.ad.Finish(ctx, worker, outs)
	if err != nil {
		return ids, err
	}
	if applied != len(jobs) {
		return ids, fmt.Errorf("finish (adapter): %d of %d outcomes applied", applied, len(jobs))
	}
	return ids, nil
}
