package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// soakBacklog is how many dispatched jobs the soak keeps waiting, as the
// continuous workload does.
const soakBacklog = 20000

// soakGrowthLimit is how much larger than in the first half of a soak the
// table or its indexes may get in the second half and still count as
// bounded: autovacuum's cycle makes the sizes saw-tooth, so a little growth
// after the first half is noise, not a trend.
const soakGrowthLimit = 1.10

// soakSample is one line of a soak: the worker's counters and tasq_jobs's
// statistics at one instant.
type soakSample struct {
	At          float64 `json:"t_s"`
	Done        int64   `json:"done"`
	Rate        float64 `json:"jobs_per_sec"`
	Purged      int64   `json:"purged"`
	Live        int64   `json:"n_live_tup"`
	Dead        int64   `json:"n_dead_tup"`
	TableBytes  int64   `json:"table_bytes"`
	IndexBytes  int64   `json:"indexes_bytes"`
	Autovacuums int64   `json:"autovacuum_count"`
}

// soakHalf summarises the samples of one half of a soak.
type soakHalf struct {
	Samples       int   `json:"samples"`
	TableMin      int64 `json:"table_bytes_min"`
	TableMax      int64 `json:"table_bytes_max"`
	TableLast     int64 `json:"table_bytes_last"`
	IndexMin      int64 `json:"indexes_bytes_min"`
	IndexMax      int64 `json:"indexes_bytes_max"`
	IndexLast     int64 `json:"indexes_bytes_last"`
	DeadMax       int64 `json:"n_dead_tup_max"`
	LiveMax       int64 `json:"n_live_tup_max"`
	AutovacuumsBy int64 `json:"autovacuum_count_last"`
}

// soakResult is the soak's RESULT line: the common fields and the soak's own.
type soakResult struct {
	benchResult
	KeepSeconds float64     `json:"keep_completed_s"`
	Purged      int64       `json:"purged"`
	First       soakHalf    `json:"first_half"`
	Second      soakHalf    `json:"second_half"`
	TableGrowth float64     `json:"table_growth"` // second half's max / first half's max
	IndexGrowth float64     `json:"index_growth"`
	Bounded     bool        `json:"bounded"`
	Final       *soakSample `json:"final"`
}

// halves splits samples by time: the first half of the run and the second.
func soakHalves(samples []soakSample, total float64) (first, second soakHalf) {
	for _, s := range samples {
		h := &first
		if s.At > total/2 {
			h = &second
		}
		if h.Samples == 0 {
			h.TableMin, h.IndexMin = s.TableBytes, s.IndexBytes
		}
		h.Samples++
		h.TableMin, h.TableMax, h.TableLast = min(h.TableMin, s.TableBytes), max(h.TableMax, s.TableBytes), s.TableBytes
		h.IndexMin, h.IndexMax, h.IndexLast = min(h.IndexMin, s.IndexBytes), max(h.IndexMax, s.IndexBytes), s.IndexBytes
		h.DeadMax, h.LiveMax, h.AutovacuumsBy = max(h.DeadMax, s.Dead), max(h.LiveMax, s.Live), s.Autovacuums
	}
	return first, second
}

// soak dispatches and works b.f.soakJobs jobs with a backlog kept, as the
// continuous workload does, while the worker's retention deletes completed
// jobs b.f.soakKeep after they finish. Every b.f.soakSample it prints the
// jobs done and tasq_jobs's rows, dead tuples and sizes; at the end it
// compares the sizes in the second half of the run with the first: with
// retention on they should stop growing (issue #9, item 3).
func (b *bench) soak(ctx context.Context) error {
	total := int64(b.f.soakJobs)
	reg := queue.NewRegistry()
	if err := queue.Register(reg, benchNoop{}); err != nil {
		return err
	}
	w, err := worker.New(b.ad, reg, worker.Config{
		Queues: []string{benchQueue}, Concurrency: b.f.concurrency,
		Retention: worker.Retention{Completed: b.f.soakKeep, Interval: time.Second},
		Logger:    slog.New(slog.NewTextHandler(b.errw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "tasq soak: %d jobs with a backlog of up to %d (concurrency %d, batches of %d); retention keeps completed jobs %v, looks every 1s; a sample every %v\n",
		total, soakBacklog, b.f.concurrency, b.f.batch, b.f.soakKeep, b.f.soakSample)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()

	start := time.Now()
	var samples []soakSample
	prevAt, prevDone := start, int64(0)
	sample := func() error {
		now, st := time.Now(), w.Stats()
		ts, err := b.tableStats(ctx)
		if err != nil {
			return err
		}
		s := soakSample{At: now.Sub(start).Seconds(), Done: st.Completed, Purged: st.Purged,
			Rate: float64(st.Completed-prevDone) / now.Sub(prevAt).Seconds(),
			Live: ts.Live, Dead: ts.Dead, TableBytes: ts.TableBytes, IndexBytes: ts.IndexBytes, Autovacuums: ts.Autovacuums}
		prevAt, prevDone = now, st.Completed
		samples = append(samples, s)
		vac := ""
		if ts.Vacuuming != "" {
			vac = " (vacuum running: " + ts.Vacuuming + ")"
		}
		fmt.Fprintf(b.out, "  %5.0fs: %d/%d done, %.0f jobs/s; tasq_jobs live %d, dead %d; table %s, indexes %s; autovacuum %d%s; purged %d\n",
			s.At, s.Done, total, s.Rate, s.Live, s.Dead, mb(s.TableBytes), mb(s.IndexBytes), s.Autovacuums, vac, s.Purged)
		return nil
	}
	fail := func(err error) error {
		cancel()
		return errors.Join(err, <-runErr)
	}

	var inserted int64
	next := start.Add(b.f.soakSample)
	for ctx.Err() == nil {
		done := w.Stats().Completed
		if done >= total {
			break
		}
		if time.Now().After(next) {
			next = next.Add(b.f.soakSample)
			if err := sample(); err != nil {
				return fail(err)
			}
		}
		select {
		case err := <-runErr:
			return fmt.Errorf("worker stopped: %v", err)
		default:
		}
		if inserted >= total || inserted-done >= soakBacklog {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		size := min(int64(b.f.batch), total-inserted)
		if _, err := b.insert(ctx, int(size)); err != nil {
			return fail(err)
		}
		inserted += size
	}
	el := time.Since(start)
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	// The last sample: the statistics after their flush interval, the purge
	// count after the retention run that may be going on now.
	time.Sleep(statsFlush)
	if err := sample(); err != nil {
		return fail(err)
	}
	cancel()
	if err := <-runErr; err != nil {
		return err
	}

	done := samples[len(samples)-1].Done
	res := soakResult{
		benchResult: benchResult{System: "tasq", Mode: "soak", Jobs: done, Seconds: el.Seconds(),
			JobsPerSec: float64(done) / el.Seconds(), Concurrency: b.f.concurrency},
		KeepSeconds: b.f.soakKeep.Seconds(), Purged: samples[len(samples)-1].Purged, Final: &samples[len(samples)-1],
	}
	res.First, res.Second = soakHalves(samples, samples[len(samples)-1].At)
	if res.First.TableMax > 0 && res.First.IndexMax > 0 && res.Second.Samples > 0 {
		res.TableGrowth = float64(res.Second.TableMax) / float64(res.First.TableMax)
		res.IndexGrowth = float64(res.Second.IndexMax) / float64(res.First.IndexMax)
		res.Bounded = res.TableGrowth <= soakGrowthLimit && res.IndexGrowth <= soakGrowthLimit
	}
	b.printSoak(res)
	return nil
}

func (b *bench) printSoak(r soakResult) {
	fmt.Fprintf(b.out, "tasq soak: %d jobs in %.1fs = %.0f jobs/s worked while dispatching, retention keeping completed jobs %.0fs; %d purged\n",
		r.Jobs, r.Seconds, r.JobsPerSec, r.KeepSeconds, r.Purged)
	for _, h := range []struct {
		name string
		h    soakHalf
	}{{"first half ", r.First}, {"second half", r.Second}} {
		fmt.Fprintf(b.out, "  %s (%d samples): table min %s, max %s, last %s; indexes min %s, max %s, last %s; dead tuples max %d; live max %d; autovacuum count %d\n",
			h.name, h.h.Samples, mb(h.h.TableMin), mb(h.h.TableMax), mb(h.h.TableLast),
			mb(h.h.IndexMin), mb(h.h.IndexMax), mb(h.h.IndexLast), h.h.DeadMax, h.h.LiveMax, h.h.AutovacuumsBy)
	}
	verdict := "not enough samples to compare the halves"
	if r.Second.Samples > 0 && r.First.TableMax > 0 {
		word := "bounded"
		if !r.Bounded {
			word = "NOT bounded"
		}
		verdict = fmt.Sprintf("%s: second half's max / first half's: table %.2fx, indexes %.2fx (bounded: both <= %.2fx)",
			word, r.TableGrowth, r.IndexGrowth, soakGrowthLimit)
	}
	fmt.Fprintf(b.out, "tasq soak: %s\n", verdict)
	j, _ := json.Marshal(r)
	fmt.Fprintf(b.out, "RESULT %s\n", j)
}
