package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// usedTableJobs is used-table's burn-down size when -n is not given.
const usedTableJobs = 200000

// finishedChunk is how many finished rows one INSERT ... SELECT stores.
const finishedChunk = 100000

// tableStats is tasq_jobs as PostgreSQL's statistics see it after a phase.
// The counters come from the cumulative statistics system, which backends
// update at most once a second: a figure may miss the last second's work.
type tableStats struct {
	Live         int64            `json:"n_live_tup"`
	Dead         int64            `json:"n_dead_tup"`
	Autovacuums  int64            `json:"autovacuum_count"`
	Autoanalyzes int64            `json:"autoanalyze_count"`
	TableBytes   int64            `json:"table_bytes"`
	IndexBytes   int64            `json:"indexes_bytes"`
	Indexes      map[string]int64 `json:"index_bytes"`
	// Vacuuming is the phase of a vacuum running on tasq_jobs at the
	// snapshot (pg_stat_progress_vacuum), or "".
	Vacuuming string `json:"vacuuming,omitempty"`
	// LastAutovacuumAgo is how long before the snapshot the last
	// autovacuum of tasq_jobs ended, in seconds; -1 when none has.
	LastAutovacuumAgo float64 `json:"last_autovacuum_s_ago"`
	// Cumulative counters, for the work a phase did (see delta).
	HeapHit    int64            `json:"heap_blks_hit"`
	HeapRead   int64            `json:"heap_blks_read"`
	IdxHit     int64            `json:"idx_blks_hit"`
	IdxRead    int64            `json:"idx_blks_read"`
	IdxScans   map[string]int64 `json:"idx_scan"`
	IdxTupRead map[string]int64 `json:"idx_tup_read"`
	// Cluster-wide counters (the throwaway server runs nothing else):
	// WAL written, full-page images in it, checkpoints, and buffers that
	// backends had to write themselves to make room.
	WALBytes       int64 `json:"wal_bytes"`
	WALFPI         int64 `json:"wal_fpi"`
	Checkpoints    int64 `json:"checkpoints"`
	BuffersBackend int64 `json:"buffers_backend"`
	// Load1 is the 1-minute load average of the machine, -1 where unknown.
	Load1 float64 `json:"load1"`
}

func (b *bench) tableStats(ctx context.Context) (*tableStats, error) {
	pool := b.ad.Pool()
	s := &tableStats{Indexes: map[string]int64{}, IdxScans: map[string]int64{}, IdxTupRead: map[string]int64{}}
	err := pool.QueryRow(ctx, `
SELECT t.n_live_tup, t.n_dead_tup, t.autovacuum_count, t.autoanalyze_count,
       pg_table_size(t.relid), pg_indexes_size(t.relid),
       coalesce((SELECT string_agg(p.phase, ',') FROM pg_stat_progress_vacuum AS p WHERE p.relid = t.relid), ''),
       coalesce(extract(epoch FROM now() - t.last_autovacuum)::float8, -1),
       coalesce(io.heap_blks_hit, 0), coalesce(io.heap_blks_read, 0), coalesce(io.idx_blks_hit, 0), coalesce(io.idx_blks_read, 0)
FROM pg_stat_user_tables AS t JOIN pg_statio_user_tables AS io USING (relid)
WHERE t.relid = 'tasq_jobs'::regclass`).Scan(
		&s.Live, &s.Dead, &s.Autovacuums, &s.Autoanalyzes, &s.TableBytes, &s.IndexBytes, &s.Vacuuming,
		&s.LastAutovacuumAgo, &s.HeapHit, &s.HeapRead, &s.IdxHit, &s.IdxRead)
	if err != nil {
		return nil, fmt.Errorf("read tasq_jobs statistics: %w", err)
	}
	// PostgreSQL 14 to 16 keep checkpoints and backend writes in
	// pg_stat_bgwriter, 17 and later in pg_stat_checkpointer and pg_stat_io.
	// Where neither query works the counters stay 0.
	for _, q := range []string{
		`SELECT w.wal_bytes::bigint, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req, b.buffers_backend
FROM pg_stat_wal AS w, pg_stat_bgwriter AS b`,
		`SELECT w.wal_bytes::bigint, w.wal_fpi, c.num_timed + c.num_requested,
       (SELECT coalesce(sum(writes), 0)::bigint FROM pg_stat_io WHERE backend_type = 'client backend')
FROM pg_stat_wal AS w, pg_stat_checkpointer AS c`,
	} {
		if err := pool.QueryRow(ctx, q).Scan(&s.WALBytes, &s.WALFPI, &s.Checkpoints, &s.BuffersBackend); err == nil {
			break
		}
	}
	s.Load1 = loadAverage()
	rows, err := pool.Query(ctx, `SELECT indexrelname, pg_relation_size(indexrelid), idx_scan, idx_tup_read
FROM pg_stat_user_indexes WHERE relid = 'tasq_jobs'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("read tasq_jobs index sizes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var size, scans, read int64
		if err := rows.Scan(&name, &size, &scans, &read); err != nil {
			return nil, err
		}
		name = strings.TrimSuffix(strings.TrimPrefix(name, "tasq_jobs_"), "_idx")
		s.Indexes[name], s.IdxScans[name], s.IdxTupRead[name] = size, scans, read
	}
	return s, rows.Err()
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

func (s *tableStats) String() string {
	names := make([]string, 0, len(s.Indexes))
	for name := range s.Indexes {
		names = append(names, name)
	}
	slices.Sort(names)
	idx := make([]string, len(names))
	for i, name := range names {
		idx[i] = fmt.Sprintf("%s %.1f", name, float64(s.Indexes[name])/(1<<20))
	}
	vac := "no"
	if s.Vacuuming != "" {
		vac = s.Vacuuming
	}
	last := "never"
	if s.LastAutovacuumAgo >= 0 {
		last = fmt.Sprintf("%.0fs ago", s.LastAutovacuumAgo)
	}
	return fmt.Sprintf("live %d, dead %d; table %s, indexes %s (%s); autovacuum %d (last %s), autoanalyze %d; vacuum running: %s",
		s.Live, s.Dead, mb(s.TableBytes), mb(s.IndexBytes), strings.Join(idx, ", "), s.Autovacuums, last, s.Autoanalyzes, vac)
}

// delta describes the work between two snapshots: buffer hits and reads
// (reads are from the OS, its page cache or the disk), and per index the
// scans and the entries they read: entries read per scan growing from one
// phase to the next is scans wading through dead entries.
func (s *tableStats) delta(prev *tableStats, jobs int64) string {
	perJob := ""
	if jobs > 0 {
		perJob = fmt.Sprintf(" (a job: heap blocks %.1f, index blocks %.1f, WAL %.0f bytes)",
			float64(s.HeapHit+s.HeapRead-prev.HeapHit-prev.HeapRead)/float64(jobs),
			float64(s.IdxHit+s.IdxRead-prev.IdxHit-prev.IdxRead)/float64(jobs), float64(s.WALBytes-prev.WALBytes)/float64(jobs))
	}
	names := slices.Sorted(maps.Keys(s.IdxScans))
	var idx []string
	for _, name := range names {
		scans, read := s.IdxScans[name]-prev.IdxScans[name], s.IdxTupRead[name]-prev.IdxTupRead[name]
		if scans == 0 {
			continue
		}
		idx = append(idx, fmt.Sprintf("%s %d scans, %d entries read (%.1f a scan)", name, scans, read, float64(read)/float64(scans)))
	}
	load := ""
	if s.Load1 >= 0 {
		load = fmt.Sprintf("; load average %.2f", s.Load1)
	}
	return fmt.Sprintf("heap blocks hit %d, read %d; index blocks hit %d, read %d%s; WAL %s, %d full-page images; %d checkpoints; %d buffers written by backends; %s%s",
		s.HeapHit-prev.HeapHit, s.HeapRead-prev.HeapRead, s.IdxHit-prev.IdxHit, s.IdxRead-prev.IdxRead, perJob,
		mb(s.WALBytes-prev.WALBytes), s.WALFPI-prev.WALFPI, s.Checkpoints-prev.Checkpoints, s.BuffersBackend-prev.BuffersBackend,
		strings.Join(idx, "; "), load)
}

// statsFlush is how long backends may hold their statistics before they
// report them (PGSTAT_MIN_INTERVAL, one second, plus a margin).
const statsFlush = 1100 * time.Millisecond

// snapshot prints tasq_jobs's statistics after a phase, and the work done
// since the previous snapshot, and returns them. It waits statsFlush first,
// so that the phase's own work is counted.
func (b *bench) snapshot(ctx context.Context, after string, jobs int64) (*tableStats, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(statsFlush):
	}
	s, err := b.tableStats(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.out, "  tasq_jobs after %s: %s\n", after, s)
	if b.lastStats != nil {
		fmt.Fprintf(b.out, "    work during it: %s\n", s.delta(b.lastStats, jobs))
	}
	b.lastStats = s
	return s, nil
}

// usedTable runs the same burn-down on an empty table, on one that holds
// b.f.finished finished rows, and right after those rows are purged, with no
// truncate or vacuum in between but what autovacuum does by itself: the
// table ages as a production table does. It is the check for "with 1M
// finished rows a burn-down reaches >= 0.9x the empty table's rate, and
// right after purging them >= 0.8x".
func (b *bench) usedTable(ctx context.Context) error {
	if !b.f.nChanged {
		b.f.n = usedTableJobs
	}
	// A short burn-down first, so that (a) does not pay alone for a cold
	// server and a new process; then the one reset.
	n := b.f.n
	b.f.n = max(1, min(n/10, 20000))
	if _, err := b.burnDown(ctx, "warm-up"); err != nil {
		return err
	}
	b.f.n = n
	if err := b.reset(ctx); err != nil {
		return err
	}
	// Rows finished before this instant are the inserted history; the
	// burn-downs' own jobs all finish after it.
	var resetAt time.Time
	if err := b.ad.Pool().QueryRow(ctx, `SELECT now()`).Scan(&resetAt); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "tasq used-table: burn-downs of %d jobs (concurrency %d); %d finished rows of %d-byte payloads; purge batches of %d; "+
		"statistics read %v after each phase (their flush interval); CHECKPOINT before each burn-down: %v\n",
		b.f.n, b.f.concurrency, b.f.finished, b.f.finishedBytes, b.f.purgeBatch, statsFlush, b.f.checkpoint)
	if _, err := b.snapshot(ctx, "the reset (truncate + VACUUM ANALYZE)", 0); err != nil {
		return err
	}

	phase := func(name, label string) (benchResult, error) {
		if b.f.checkpoint {
			t0 := time.Now()
			if _, err := b.ad.Pool().Exec(ctx, `CHECKPOINT`); err != nil {
				return benchResult{}, fmt.Errorf("--checkpoint: %w", err)
			}
			fmt.Fprintf(b.out, "  CHECKPOINT before %s took %.2fs\n", label, time.Since(t0).Seconds())
		}
		samp := b.startWaitSampler(ctx, burnDownWaitsSQL)
		res, err := b.burnDown(ctx, label)
		waits := samp.stop()
		if err != nil {
			return res, err
		}
		res.Mode, res.Phase, res.Waits = "used-table", name, waits
		if res.Table, err = b.snapshot(ctx, label, res.Jobs); err != nil {
			return res, err
		}
		return res, nil
	}

	// (a) The empty table.
	a, err := phase("empty", "(a) burn-down on the empty table")
	if err != nil {
		return err
	}
	b.printUsedTable(a, a)

	// (b) With the finished rows present.
	insertRate, err := b.insertFinished(ctx, resetAt)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "  inserted %d finished rows at %.0f rows/s (INSERT ... SELECT generate_series, %d rows a statement)\n",
		b.f.finished, insertRate, finishedChunk)
	if _, err := b.snapshot(ctx, "inserting the finished rows", 0); err != nil {
		return err
	}
	bres, err := phase("finished", fmt.Sprintf("(b) burn-down with %d finished rows", b.f.finished))
	if err != nil {
		return err
	}
	bres.FinishedRows = int64(b.f.finished)
	bres.RatioToEmpty = bres.JobsPerSec / a.JobsPerSec
	b.printUsedTable(bres, a)

	// (c) Right after purging them.
	purged, purgeRate, err := b.purgeFinished(ctx, resetAt)
	if err != nil {
		return err
	}
	if purged != int64(b.f.finished) {
		return fmt.Errorf("purged %d rows, want the %d inserted finished rows (did a burn-down take longer than 30 minutes?)", purged, b.f.finished)
	}
	if _, err := b.snapshot(ctx, "the purge", 0); err != nil {
		return err
	}
	cres, err := phase("purged", fmt.Sprintf("(c) burn-down right after purging %d rows", purged))
	if err != nil {
		return err
	}
	cres.FinishedRows = purged
	cres.PurgePerSec = purgeRate
	cres.RatioToEmpty = cres.JobsPerSec / a.JobsPerSec
	b.printUsedTable(cres, a)

	fmt.Fprintf(b.out, "tasq used-table: empty %.0f jobs/s; with %d finished rows %.0f jobs/s = %.2fx (target >= 0.90); purge %.0f rows/s; right after the purge %.0f jobs/s = %.2fx (target >= 0.80)\n",
		a.JobsPerSec, b.f.finished, bres.JobsPerSec, bres.RatioToEmpty, purgeRate, cres.JobsPerSec, cres.RatioToEmpty)
	return nil
}

func (b *bench) printUsedTable(r, empty benchResult) {
	ratio := ""
	if r.Phase != "empty" {
		ratio = fmt.Sprintf(" = %.2fx the empty table", r.JobsPerSec/empty.JobsPerSec)
	}
	fmt.Fprintf(b.out, "tasq used-table %-8s %d jobs in %.2fs = %.0f jobs/s worked%s; inserted at %.0f jobs/s\n",
		r.Phase+":", r.Jobs, r.Seconds, r.JobsPerSec, ratio, r.InsertPerSec)
	if len(r.Waits) > 0 {
		fmt.Fprintf(b.out, "  the database's backends, on average (claim/finish/insert by statement; running = on or waiting for a CPU): %s\n", formatWaits(r.Waits, 8))
	}
	if b.f.json {
		b.print(r)
	}
}

// insertFinishedSQL stores finished rows $1..$2 of $3 as completed no-op
// jobs, as they would be a while after a busy day: finished_at spread evenly
// from 23 hours to 1 hour before $4 (older than every burn-down job, and
// younger than the worker's default retention of 24 hours, so the burn-down
// workers' own retention leaves them alone), dispatched a little before,
// IDs in the Go client's UUIDv7 layout for the dispatch time (so the primary
// key holds them in time order, left of the burn-downs' jobs), and a payload
// of $5 bytes of text.
const insertFinishedSQL = `
INSERT INTO tasq_jobs (id, kind, queue, state, priority, payload, result, attempt, run_at, dispatched_at,
                       attempted_at, attempted_by, finished_at, claim_token)
SELECT encode(overlay(uuid_send(gen_random_uuid())
                      PLACING substring(int8send(t.us / 1000) FROM 3) || int2send((28672 + (t.us % 1000) * 1000 / 256)::smallint)
                      FROM 1 FOR 8), 'hex')::uuid,
       'tasq_bench_noop', $6, 'completed', 0,
       jsonb_build_object('N', t.i, 'Pad', left(repeat(md5(t.i::text), ($5 + 31) / 32), $5)),
       '{}', 1, t.dispatched, t.dispatched, t.finished - interval '5 milliseconds', 'tasq-bench-history', t.finished, 1
FROM (
    SELECT g.i, f.finished, f.finished - (50 + g.i % 100) * interval '1 millisecond' AS dispatched,
           (extract(epoch FROM f.finished - (50 + g.i % 100) * interval '1 millisecond') * 1000000)::bigint AS us
    FROM generate_series($1::bigint, $2::bigint) AS g(i),
         LATERAL (SELECT $4::timestamptz - interval '1 hour' - interval '22 hours' * (($3 - g.i)::float8 / $3)) AS f(finished)
) AS t`

// insertFinished stores b.f.finished finished rows, oldest first, and
// returns the rate. It neither vacuums nor analyzes afterwards.
func (b *bench) insertFinished(ctx context.Context, base time.Time) (float64, error) {
	n := int64(b.f.finished)
	fmt.Fprintf(b.errw, "[tasq] used-table: inserting %d finished rows\n", n)
	start := time.Now()
	for from := int64(1); from <= n; from += finishedChunk {
		to := min(from+finishedChunk-1, n)
		if _, err := b.ad.Pool().Exec(ctx, insertFinishedSQL, from, to, n, base, b.f.finishedBytes, benchQueue); err != nil {
			return 0, fmt.Errorf("insert finished rows: %w", err)
		}
		if time.Since(start) > 2*time.Second {
			fmt.Fprintf(b.errw, "[tasq] used-table: %d/%d finished rows inserted\n", to, n)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// purgeFinished deletes the inserted finished rows with the adapter's Purge,
// batch after batch with no pause (retention pauses after slow batches and
// stops after 10 s a run; this is as fast as its statements go). It selects
// the rows by age: finished more than 30 minutes before base, which every
// inserted row did (at least an hour) and no burn-down job did.
func (b *bench) purgeFinished(ctx context.Context, base time.Time) (int64, float64, error) {
	var dbNow time.Time
	if err := b.ad.Pool().QueryRow(ctx, `SELECT now()`).Scan(&dbNow); err != nil {
		return 0, 0, err
	}
	olderThan := dbNow.Sub(base) + 30*time.Minute
	f := queue.PurgeFilter{State: queue.StateCompleted, Queue: benchQueue, OlderThan: olderThan, Limit: b.f.purgeBatch}
	fmt.Fprintf(b.errw, "[tasq] used-table: purging the finished rows in batches of %d\n", b.f.purgeBatch)
	var total int64
	var batches []time.Duration
	start, last := time.Now(), time.Now()
	for ctx.Err() == nil {
		t0 := time.Now()
		n, err := b.ad.Purge(ctx, f)
		if err != nil {
			return total, 0, err
		}
		batches = append(batches, time.Since(t0))
		total += int64(n)
		if n < f.Limit {
			break
		}
		if time.Since(last) >= 2*time.Second {
			last = time.Now()
			fmt.Fprintf(b.errw, "[tasq] used-table: %d purged, last batch %.1f ms\n", total, ms(batches[len(batches)-1]))
		}
	}
	if ctx.Err() != nil {
		return total, 0, ctx.Err()
	}
	el := time.Since(start)
	rate := float64(total) / el.Seconds()
	first := batches[:min(10, len(batches))]
	lastTen := batches[max(0, len(batches)-10):]
	fmt.Fprintf(b.out, "  purged %d rows in %.2fs = %.0f rows/s (%d Purge calls of up to %d; per call p50 %.1f ms, p99 %.1f ms, max %.1f ms; first 10 avg %.1f ms, last 10 avg %.1f ms)\n",
		total, el.Seconds(), rate, len(batches), f.Limit,
		ms(percentile(batches, 0.50)), ms(percentile(batches, 0.99)), ms(slices.Max(batches)), ms(mean(first)), ms(mean(lastTen)))
	return total, rate, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the p-th percentile of ds (sorting a copy).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// loadAverage is the machine's 1-minute load average, or -1 where
// /proc/loadavg does not exist.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
