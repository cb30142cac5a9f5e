package postgres

import (
	"context"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

// exactStatsMaxPages is the largest tasq_jobs (in 8 kB pages, about 60,000
// jobs) that Stats counts in full: counting 57,000 jobs in 1,900 pages took
// 25 ms on a loaded 2-core machine, less than the exact live counts take at
// ten million jobs, and every figure is exact. A larger table gets exact
// counts of its live jobs and estimates of its finished ones.
const exactStatsMaxPages = 2000

// liveStatsSQL counts the live jobs per queue and state, each part from the
// partial index that holds only those jobs, so that the work grows with the
// live jobs, never with the finished ones: an index-only scan of the claim
// index (its first column is the queue) for available jobs, index scans of
// the due index for scheduled and retryable ones and of the lease index for
// running ones, and of the pending index (migration 10) for pending ones.
// Each WHERE clause is the index's predicate, written the same way, so that
// the planner can use the index. It runs after pinIndexSQL.
const liveStatsSQL = `
SELECT queue, 'available', count(*) FROM tasq_jobs WHERE state = 'available' GROUP BY queue
UNION ALL
SELECT queue, state::text, count(*) FROM tasq_jobs WHERE state IN ('scheduled', 'retryable') GROUP BY queue, state
UNION ALL
SELECT queue, 'running', count(*) FROM tasq_jobs WHERE state = 'running' GROUP BY queue
UNION ALL
SELECT queue, 'pending', count(*) FROM tasq_jobs WHERE deps_waiting IS NOT NULL AND state = 'pending' GROUP BY queue`

// pinIndexSQL runs before liveStatsSQL in the same pipeline (one implicit
// transaction, which the setting does not outlive). It keeps the planner off
// sequential scans: with statistics taken while a queue had a large backlog
// it would otherwise read the whole table to count a few live jobs.
const pinIndexSQL = `SELECT set_config('enable_seqscan', 'off', true)`

// exactStatsSQL counts every job; Stats runs it on small tables, and on large
// ones whose statistics cannot give an estimate.
const exactStatsSQL = `SELECT queue, state::text, count(*) FROM tasq_jobs GROUP BY 1, 2`

// tableSizeSQL reads what Stats needs to size tasq_jobs: its pages now, and
// the number of rows the cumulative statistics count (inserts and deletes,
// kept current by every committing transaction) and the planner's figures
// from the last VACUUM or ANALYZE (reltuples over relpages), the fallback
// when the former is missing (the statistics were reset, as after a crash).
const tableSizeSQL = `
SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint,
       pg_stat_get_live_tuples(c.oid), c.reltuples::float8, c.relpages::bigint
FROM pg_class AS c WHERE c.oid = $1::regclass`

// queueStateMCVSQL reads the most common (queue, state) pairs of tasq_jobs
// and their share of the table, which ANALYZE keeps in the statistics object
// tasq_jobs_queue_state (migration 5). It returns no rows when the object is
// missing or has never been built.
const queueStateMCVSQL = `
SELECT s.most_common_vals[i][array_position(s.attnames, 'queue')],
       s.most_common_vals[i][array_position(s.attnames, 'state')],
       s.most_common_freqs[i]
FROM pg_stats_ext AS s, generate_subscripts(s.most_common_freqs, 1) AS i
WHERE s.statistics_name = 'tasq_jobs_queue_state' AND s.tablename = 'tasq_jobs' AND s.schemaname = $1`

// columnMCVSQL reads the most common queues and states of tasq_jobs and their
// shares, which the same ANALYZE that builds tasq_jobs_queue_state keeps per
// column, from the same sample.
const columnMCVSQL = `
SELECT attname::text, most_common_vals::text::text[], most_common_freqs::float8[]
FROM pg_stats
WHERE tablename = 'tasq_jobs' AND attname IN ('queue', 'state') AND NOT inherited AND schemaname = $1`

// Stats implements queue.StatsReader: job counts per queue and state, sorted
// by queue, then state in life-cycle order.
//
// The live jobs (pending, scheduled, available, running, retryable) are always
// counted exactly, from the partial indexes that hold only them: a queue
// table keeps few of them, however many finished jobs it holds. The finished
// ones (completed, failed, cancelled) are counted too while the table is
// small (up to exactStatsMaxPages). In a larger table they are estimated and
// marked Estimated: their total is the table's row count as the cumulative
// statistics keep it, less the live jobs, shared among the (queue, state)
// pairs as ANALYZE last saw them in its sample (see estimateFinished). The
// estimate is as fresh as the last ANALYZE (autovacuum runs one after 5% of
// the table changed). When there are no statistics to estimate from (the
// table was never analyzed since migration 5), Stats counts every row, slow
// as that is on a large table.
func (a *Adapter) Stats(ctx context.Context) ([]queue.QueueStat, error) {
	return a.stats(ctx, exactStatsMaxPages)
}

// tableSize is what tableSizeSQL reads.
type tableSize struct {
	pages      int64   // the table's size now
	liveTuples int64   // rows, as the cumulative statistics count them; 0 if unknown
	reltuples  float64 // rows at the last VACUUM or ANALYZE; -1 if never
	relpages   int64   // pages at the last VACUUM or ANALYZE
}

// rows estimates the number of rows in the table now, 0 if nothing says.
func (t tableSize) rows() float64 {
	switch {
	case t.liveTuples > 0:
		return float64(t.liveTuples)
	case t.reltuples > 0 && t.relpages > 0:
		// What the planner does: the density at the last ANALYZE times the
		// pages there are now.
		return t.reltuples / float64(t.relpages) * float64(t.pages)
	}
	return 0
}

// mcvItem is one (queue, state) pair of the statistics and its share of the table.
type mcvItem struct {
	queue string
	state queue.JobState
	freq  float64
}

// tableStats is what ANALYZE's sample says about tasq_jobs: the shares of
// its most common (queue, state) pairs, and of its most common queues and
// states on their own.
type tableStats struct {
	pairs  []mcvItem
	queues map[string]float64
	states map[queue.JobState]float64
}

// stats is Stats with the size up to which a table is counted in full.
func (a *Adapter) stats(ctx context.Context, exactMaxPages int64) ([]queue.QueueStat, error) {
	var (
		size tableSize
		ts   = tableStats{queues: map[string]float64{}, states: map[queue.JobState]float64{}}
		live []queue.QueueStat
	)
	b := &pgx.Batch{}
	b.Queue(tableSizeSQL, a.sql.object("tasq_jobs")).QueryRow(func(row pgx.Row) error {
		return row.Scan(&size.pages, &size.liveTuples, &size.reltuples, &size.relpages)
	})
	b.Queue(queueStateMCVSQL, a.sql.schema).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var it mcvItem
			var st string
			if err := rows.Scan(&it.queue, &st, &it.freq); err != nil {
				return err
			}
			it.state = queue.JobState(st)
			ts.pairs = append(ts.pairs, it)
		}
		return rows.Err()
	})
	b.Queue(columnMCVSQL, a.sql.schema).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var col string
			var vals []string
			var freqs []float64
			if err := rows.Scan(&col, &vals, &freqs); err != nil {
				return err
			}
			for i := range min(len(vals), len(freqs)) {
				if col == "queue" {
					ts.queues[vals[i]] = freqs[i]
				} else {
					ts.states[queue.JobState(vals[i])] = freqs[i]
				}
			}
		}
		return rows.Err()
	})
	b.Queue(pinIndexSQL)
	b.Queue(a.sql.q(liveStatsSQL)).Query(func(rows pgx.Rows) error {
		var err error
		live, err = scanStats(rows)
		return err
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, wrapErr("stats", err)
	}
	if size.pages > exactMaxPages {
		if out, ok := estimateFinished(size.rows(), ts, live); ok {
			return out, nil
		}
	}
	rows, err := a.pool.Query(ctx, a.sql.q(exactStatsSQL))
	if err != nil {
		return nil, wrapErr("stats", err)
	}
	out, err := scanStats(rows)
	if err != nil {
		return nil, wrapErr("stats", err)
	}
	sortStats(out)
	return out, nil
}

// estimateFinished adds to the exact live counts estimates of the finished
// jobs per queue and state, for a table of about rows rows, and reports
// false when the statistics cannot give them: there are none, or they know
// no finished jobs while the table holds more than a few.
//
// The finished jobs number rows less the live ones. They are shared among
// the finished (queue, state) pairs of the statistics' most-common list by
// each pair's share of ANALYZE's sample. A pair too rare for that list
// (under about 25 rows of the sample of 30,000, 0.08%: 8,000 rows of ten
// million) still counts in the shares of its queue and of its state, which
// the per-column statistics keep from the same sample; what the list lacks
// of a state's share goes to the queues that lack part of theirs, in
// proportion to it. Then all the shares are scaled to add up to the finished
// total. A pair absent from both (a queue too rare for the per-column list)
// is left out, and the figure of every pair is as good as a sample of 30,000
// rows makes it: a pair of 0.1% of the table is off by about a fifth.
func estimateFinished(rows float64, ts tableStats, live []queue.QueueStat) ([]queue.QueueStat, bool) {
	if rows <= 0 || len(ts.pairs) == 0 {
		return nil, false
	}
	var liveCount int64
	for _, s := range live {
		liveCount += s.Count
	}
	finished := max(rows-float64(liveCount), 0)

	type pair struct {
		queue string
		state queue.JobState
	}
	share := map[pair]float64{}       // of the finished pairs in the sample
	listed := map[pair]bool{}         // every pair of the most-common list
	queueRest := map[string]float64{} // each queue's share the list lacks
	stateRest := map[queue.JobState]float64{}
	for q, f := range ts.queues {
		queueRest[q] = f
	}
	for st, f := range ts.states {
		if isFinished(st) {
			stateRest[st] = f
		}
	}
	for _, it := range ts.pairs {
		p := pair{it.queue, it.state}
		listed[p] = true
		queueRest[it.queue] -= it.freq
		if isFinished(it.state) {
			share[p] += it.freq
			stateRest[it.state] -= it.freq
		}
	}
	// What the list lacks of a state, on the queues that lack some of theirs.
	// Floating-point remainders under one row of the sample are noise.
	const noise = 1.0 / 300000
	for st, rest := range stateRest {
		if rest <= noise {
			continue
		}
		var lacking float64
		for q, qr := range queueRest {
			if qr > noise && !listed[pair{q, st}] {
				lacking += qr
			}
		}
		for q, qr := range queueRest {
			if qr > noise && !listed[pair{q, st}] {
				share[pair{q, st}] += rest * qr / lacking
			}
		}
	}
	var sum float64
	for _, f := range share {
		sum += f
	}
	out := slices.Clone(live)
	if sum == 0 {
		// No finished job in the sample: fine while the table holds
		// (almost) only live jobs, a sign of statistics taken before the
		// finished jobs came otherwise.
		if finished > rows/100+1000 {
			return nil, false
		}
		sortStats(out)
		return out, true
	}
	for p, f := range share {
		if n := int64(math.Round(finished * f / sum)); n > 0 {
			out = append(out, queue.QueueStat{Queue: p.queue, State: p.state, Count: n, Estimated: true})
		}
	}
	sortStats(out)
	return out, true
}

// isFinished reports whether st is a state a job does not leave by itself.
func isFinished(st queue.JobState) bool {
	return st == queue.StateCompleted || st == queue.StateFailed || st == queue.StateCancelled
}

// scanStats reads (queue, state, count) rows.
func scanStats(rows pgx.Rows) ([]queue.QueueStat, error) {
	defer rows.Close()
	var out []queue.QueueStat
	for rows.Next() {
		var s queue.QueueStat
		var st string
		if err := rows.Scan(&s.Queue, &st, &s.Count); err != nil {
			return nil, err
		}
		s.State = queue.JobState(st)
		out = append(out, s)
	}
	return out, rows.Err()
}

// sortStats orders stats by queue, then state in life-cycle order.
func sortStats(stats []queue.QueueStat) {
	slices.SortFunc(stats, func(x, y queue.QueueStat) int {
		if c := strings.Compare(x.Queue, y.Queue); c != 0 {
			return c
		}
		return slices.Index(queue.States, x.State) - slices.Index(queue.States, y.State)
	})
}
