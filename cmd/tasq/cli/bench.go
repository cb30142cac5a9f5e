package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/localpg"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// benchQueue is the queue the benchmark's jobs use.
const benchQueue = "tasq_bench"

// benchNoop is the burn-down and continuous workloads' job: it does nothing,
// so the numbers measure the queue itself.
type benchNoop struct{ N int }

func (benchNoop) Kind() string { return "tasq_bench_noop" }

func (benchNoop) Config() queue.Config { return queue.Config{Queue: benchQueue} }

func (benchNoop) Handle(context.Context) (struct{}, error) { return struct{}{}, nil }

// benchLatency is the latency workload's job: it records how long it waited
// between the start of its dispatch and the start of its Handle.
type benchLatency struct{ SentAt int64 }

func (benchLatency) Kind() string { return "tasq_bench_latency" }

func (benchLatency) Config() queue.Config { return queue.Config{Queue: benchQueue} }

func (t benchLatency) Handle(ctx context.Context) (struct{}, error) {
	if rec, ok := ctx.Value(latencyKey{}).(*latencyRecorder); ok {
		rec.add(time.Since(time.Unix(0, t.SentAt)), t.SentAt)
	}
	return struct{}{}, nil
}

type latencyKey struct{}

type latencyRecorder struct {
	mu      sync.Mutex
	after   int64 // only samples sent after this (unix ns) count: the warm-up is left out
	samples []time.Duration
	seen    atomic.Int64
}

func (r *latencyRecorder) add(d time.Duration, sentAt int64) {
	r.seen.Add(1)
	if sentAt < r.after {
		return
	}
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.mu.Unlock()
}

// benchResult is one workload's outcome; the JSON form is the RESULT line
// that `make bench-compare` reads.
type benchResult struct {
	System        string  `json:"system"`
	Mode          string  `json:"mode"`
	Jobs          int64   `json:"jobs"`
	Seconds       float64 `json:"seconds"`
	JobsPerSec    float64 `json:"jobs_per_sec,omitempty"`
	InsertPerSec  float64 `json:"insert_jobs_per_sec,omitempty"`
	P50ms         float64 `json:"p50_ms,omitempty"`
	P95ms         float64 `json:"p95_ms,omitempty"`
	P99ms         float64 `json:"p99_ms,omitempty"`
	Concurrency   int     `json:"concurrency,omitempty"`
	RatePerSecond int     `json:"rate,omitempty"`

	// used-table: which phase, how it compares with the empty table, the
	// finished rows present or purged, and the table after the phase.
	Phase        string      `json:"phase,omitempty"`
	RatioToEmpty float64     `json:"ratio_to_empty,omitempty"`
	FinishedRows int64       `json:"finished_rows,omitempty"`
	PurgePerSec  float64     `json:"purge_rows_per_sec,omitempty"`
	Table        *tableStats `json:"table,omitempty"`
	// notify: single-job dispatches from Dispatchers goroutines, with the
	// adapter's NOTIFY or without it (the baseline statement).
	Dispatchers int `json:"dispatchers,omitempty"`
	// latency: the dispatch rate achieved (below --rate when the
	// dispatchers cannot keep up)
	DispatchedPerSec float64 `json:"dispatched_per_sec,omitempty"`
	// latency: how long the Dispatch call took, commit included (p50, p99)
	DispatchP50ms float64 `json:"dispatch_p50_ms,omitempty"`
	DispatchP99ms float64 `json:"dispatch_p99_ms,omitempty"`
	Variant       string  `json:"variant,omitempty"`
	// used-table, notify: the bench's backends by what they were doing, as
	// the average number of backends over pg_stat_activity samples.
	Waits map[string]float64 `json:"waits,omitempty"`
}

type benchFlags struct {
	otel       bool                      // trace dispatches and attempts (tasqotel)
	unique     bool                      // every job unique by payload (all distinct, so all stored)
	noopMW     bool                      // one attempt middleware that only calls next
	prom       bool                      // Prometheus metrics (tasqprom), gathered every second
	metrics    *benchProm                // --prom's, for the client and the workers
	middleware []queue.AttemptMiddleware // --otel's, for the workers
	mode       string
	n          int
	duration   time.Duration
	latencyFor time.Duration
	// latency: dispatches in flight at once (each its own transaction)
	latencyDispatchers int
	// burn-down: DispatchMany calls in flight while inserting
	inserters   int
	rate        int
	concurrency int
	batch       int
	json        bool
	cpuProfile  string
	memProfile  string
	// keepTable: no TRUNCATE and no VACUUM before, between or after the
	// workloads; each runs on the table as the one before left it.
	keepTable bool
	// limits on the benchmark's queue, to measure what the controlled claim costs
	limits queue.QueueLimits

	// used-table
	finished      int
	finishedBytes int
	purgeBatch    int
	checkpoint    bool
	nChanged      bool // -n was given; used-table's default is usedTableJobs otherwise
	// outbox: the Redis the outbox workload relays to
	redisURL string
	// notify
	notifyFor   time.Duration
	dispatchers []int
	// used-table and notify
	waitSampleTick time.Duration
	// soak
	soakJobs   int
	soakKeep   time.Duration
	soakSample time.Duration
	// scale-out and yardstick (bench_scaleout.go, bench_yardstick.go)
	scale scaleFlags
}

func (a *app) benchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and pick-up latency on this machine",
		Long: `bench measures TasQ on a real PostgreSQL with no-op jobs:

  burn-down   insert -n jobs in batches (the batch-dispatch rate), then work them all
  continuous  keep a backlog for --duration while working; jobs/s completed
  latency     dispatch one job at a time at --rate jobs/s for --latency-duration;
              dispatch-to-start latency p50/p95/p99 (LISTEN/NOTIFY at work)
  after-burn-down
              burn-down of -n jobs, then continuous at once on the same table:
              no TRUNCATE, no VACUUM between them (autovacuum's own only), so
              continuous meets the -n finished rows and the dead row versions
              the burn-down left, as a production table would

Every workload starts on a truncated, vacuumed table unless --keep-table is
given; with it, each one runs on the table as the one before (or the previous
bench run) left it.

Opt-in workloads (not part of all; they take about a minute each):

  used-table  burn-downs of -n jobs (default 200000 here) on a table that ages
              as in production: (a) on an empty table; (b) after inserting
              --finished completed rows (no vacuum but autovacuum's own);
              (c) right after deleting those rows with the adapter's Purge in
              batches, as retention does. Prints each rate, the ratios b/a and
              c/a, the purge rate, and dead tuples, sizes and autovacuum
              counts of tasq_jobs after each phase, with the work each
              phase did (buffers, WAL, index entries read)
  notify      single-job Dispatch from each of --dispatchers concurrent
              goroutines for --notify-duration: jobs/s and p50/p99 dispatch
              latency with the adapter's INSERT + pg_notify, and with a
              baseline copy of that INSERT without pg_notify; plus where the
              dispatching backends wait (pg_stat_activity samples)
  soak        dispatch and work --soak-jobs jobs (default 2,000,000; several
              minutes) with a backlog kept, retention on and short (completed
              jobs kept --soak-keep, retention every 1s). Every --soak-sample
              a line: jobs done, the rate, tasq_jobs's live and dead tuples,
              table and index sizes, autovacuum count, rows purged; at the
              end the sizes in the second half of the run against the first
              (bounded: they stop growing) and, always, a RESULT line
  outbox      the transactional outbox to Redis (--redis-url): -n jobs
              dispatched through it in transactions of --batch, relayed by
              one relay and by two (jobs/s each way); then single jobs at
              --rate for --latency-duration, each in its own transaction,
              with a relay and a Redis worker: dispatch-to-start p50/p95/p99
  scale-out   one burn-down of -n jobs per count in --processes (default
              1,2,4), worked by that many worker processes (this binary,
              restarted as workers), each with --concurrency slots, as
              users run N identical processes: aggregate jobs/s, claims
              (empty ones, mean and p99 time, jobs per claim), outcome
              batches, CPU seconds of the workers, of PostgreSQL and of
              the machine, and where the backends wait
  yardstick   the bare SQL of claim + complete in batches of
              --yardstick-batch on one connection, no worker machinery,
              over -n jobs; the same loop with the adapter's own claim and
              finish statements; then TasQ's burn-down of -n jobs; each on
              the reset table, as a fraction of the first (target >= 0.90
              for the burn-down), with the claims and outcome batches the
              worker achieved and each phase's CPU seconds

It prints progress every 2 s and a result line per workload (--json adds a
machine-readable RESULT line). Without --database-url or TASQ_DATABASE_URL it
starts a throwaway PostgreSQL with the default configuration. On a database of
yours it uses the queue tasq_bench and deletes only its own jobs; run it on a
database of its own for clean numbers. burn-down, continuous, latency and
all also run on Redis and MySQL (a redis:// or mysql:// URL; the jobs live
under a key prefix, or in a queue, of their own); the other workloads are
PostgreSQL only.`,
		Example: `  tasq bench                                  # all three workloads
  tasq bench --mode burn-down -n 200000
  tasq bench --mode continuous --duration 20s --json
  tasq bench --mode after-burn-down -n 200000 --duration 20s
  tasq bench --mode used-table --finished 1000000
  tasq bench --mode notify --dispatchers 1,8,32 --notify-duration 5s
  tasq bench --mode soak --soak-jobs 1000000 --soak-keep 10s
  tasq bench --mode scale-out --processes 1,2,4 -n 200000
  tasq bench --mode yardstick -n 200000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			f.nChanged = cmd.Flags().Changed("jobs")
			return a.runBench(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", "all", "workload: burn-down, continuous, latency, all (those three), after-burn-down, used-table, notify, soak, outbox, scale-out or yardstick")
	fl.BoolVar(&f.keepTable, "keep-table", false, "no TRUNCATE and no VACUUM of tasq_jobs before, between or after the workloads: each runs on the table as the previous one left it")
	fl.IntVarP(&f.n, "jobs", "n", 100000, "burn-down: jobs to insert and work (used-table: default 200000)")
	fl.DurationVar(&f.duration, "duration", 20*time.Second, "continuous: how long to run")
	fl.DurationVar(&f.latencyFor, "latency-duration", 10*time.Second, "latency: how long to dispatch")
	fl.IntVar(&f.rate, "rate", 500, "latency: jobs dispatched per second")
	fl.IntVar(&f.latencyDispatchers, "latency-dispatchers", 4, "latency: single-job dispatches in flight at once, each its own transaction (the River peer's --dispatchers); at high --rate a commit's wait for the disk caps the rate at about this many per commit time")
	fl.IntVar(&f.concurrency, "concurrency", 2000, "worker concurrency (River's benchmark uses MaxWorkers 2000)")
	fl.IntVar(&f.batch, "batch", 1000, "jobs per DispatchMany call when inserting")
	fl.IntVar(&f.inserters, "inserters", 1, "burn-down: DispatchMany calls in flight at once while inserting (1: one batch after another, as the River peer inserts)")
	fl.BoolVar(&f.otel, "otel", false, "trace every dispatch and attempt with tasqotel (sampled, batched, discarded): what the middleware and OpenTelemetry cost")
	fl.BoolVar(&f.unique, "unique", false, "dispatch every job unique by its payload (WithUnique ByPayload; the payloads differ, so every job is stored): what unique keys cost")
	fl.BoolVar(&f.noopMW, "middleware", false, "run every attempt through one attempt middleware that only calls next (claims then read the jobs' metadata): what the middleware seam costs, apart from --otel's tracing")
	fl.BoolVar(&f.prom, "prom", false, "count every dispatch, attempt, claim and outcome write with tasqprom and gather the metrics (queue depths and lags included) every second: what the Prometheus metrics cost")
	fl.BoolVar(&f.json, "json", false, "also print a RESULT {json} line per workload")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the workloads to this file (go tool pprof)")
	fl.StringVar(&f.memProfile, "memprofile", "", "write a Go allocation profile of the run to this file when it ends (go tool pprof -sample_index=alloc_space)")
	fl.IntVar(&f.limits.Total.MaxRunning, "max-running", 0, "limit the benchmark queue to this many running jobs across the fleet (0: no limit)")
	fl.IntVar(&f.limits.Total.MaxStarts, "max-starts", 0, "limit the benchmark queue to this many starts per --per (0: no limit)")
	fl.DurationVar(&f.limits.Total.Per, "per", 0, "the interval of --max-starts")
	fl.IntVar(&f.finished, "finished", 1000000, "used-table: finished (completed) rows to insert before the second burn-down")
	fl.IntVar(&f.finishedBytes, "finished-payload", 256, "used-table: payload size in bytes of each finished row")
	fl.IntVar(&f.purgeBatch, "purge-batch", 1000, "used-table: rows per Purge call (retention uses 1000)")
	fl.BoolVar(&f.checkpoint, "checkpoint", false, "used-table: run CHECKPOINT before each burn-down, so that none pays for writing back the phase before it (it removes no dead rows)")
	fl.DurationVar(&f.notifyFor, "notify-duration", 5*time.Second, "notify: how long to dispatch at each concurrency, with and without NOTIFY")
	fl.IntSliceVar(&f.dispatchers, "dispatchers", []int{1, 8, 32}, "notify: concurrent dispatching goroutines, one measurement each")
	fl.DurationVar(&f.waitSampleTick, "wait-sample", 50*time.Millisecond, "used-table, notify: how often to sample pg_stat_activity wait events (0: never)")
	fl.IntVar(&f.soakJobs, "soak-jobs", 2000000, "soak: jobs to dispatch and work")
	fl.StringVar(&f.redisURL, "redis-url", os.Getenv("TASQ_REDIS_URL"), "outbox: the Redis the relay delivers to (default $TASQ_REDIS_URL)")
	fl.DurationVar(&f.soakKeep, "soak-keep", 10*time.Second, "soak: how long retention keeps completed jobs")
	fl.DurationVar(&f.soakSample, "soak-sample", 10*time.Second, "soak: how often to print a sample line")
	f.scale.register(fl)
	return cmd
}

func (f *benchFlags) validate() error {
	switch f.mode {
	case "all", "burn-down", "continuous", "latency", "after-burn-down", "used-table", "notify", "soak", "outbox", "scale-out", "yardstick":
	default:
		return fmt.Errorf("--mode %q: use burn-down, continuous, latency, all, after-burn-down, used-table, notify, soak, outbox, scale-out or yardstick", f.mode)
	}
	if err := f.scale.validate(); err != nil {
		return err
	}
	switch {
	case f.n <= 0:
		return fmt.Errorf("-n %d: the job count must be positive", f.n)
	case f.inserters <= 0:
		return fmt.Errorf("--inserters must be positive, got %d", f.inserters)
	case f.latencyDispatchers <= 0:
		return fmt.Errorf("--latency-dispatchers must be positive, got %d", f.latencyDispatchers)
	case f.duration <= 0 || f.latencyFor <= 0:
		return errors.New("--duration and --latency-duration must be positive")
	case f.rate <= 0 || f.rate > 100000:
		return fmt.Errorf("--rate %d: use 1 to 100000 jobs per second", f.rate)
	case f.concurrency <= 0:
		return fmt.Errorf("--concurrency %d: must be positive", f.concurrency)
	case f.batch <= 0 || f.batch > 100000:
		return fmt.Errorf("--batch %d: use 1 to 100000", f.batch)
	case f.finished <= 0:
		return fmt.Errorf("--finished %d: the row count must be positive", f.finished)
	case f.finishedBytes < 0 || f.finishedBytes > 1<<20:
		return fmt.Errorf("--finished-payload %d: use 0 to 1048576 bytes", f.finishedBytes)
	case f.purgeBatch <= 0 || f.purgeBatch > 100000:
		return fmt.Errorf("--purge-batch %d: use 1 to 100000", f.purgeBatch)
	case f.notifyFor <= 0:
		return errors.New("--notify-duration must be positive")
	case f.waitSampleTick < 0:
		return errors.New("--wait-sample must not be negative")
	case f.soakJobs <= 0:
		return fmt.Errorf("--soak-jobs %d: the job count must be positive", f.soakJobs)
	case f.soakKeep <= 0 || f.soakSample <= 0:
		return errors.New("--soak-keep and --soak-sample must be positive")
	}
	if len(f.dispatchers) == 0 {
		return errors.New("--dispatchers: give at least one count, e.g. 1,8,32")
	}
	for _, d := range f.dispatchers {
		if d <= 0 || d > 1000 {
			return fmt.Errorf("--dispatchers %d: use 1 to 1000 goroutines", d)
		}
	}
	return nil
}

func (a *app) runBench(cmd *cobra.Command, f *benchFlags) (err error) {
	if err := f.validate(); err != nil {
		return err
	}
	if f.scale.child {
		return a.runScaleChild(cmd, f) // a scale-out worker process: bench_scaleout.go
	}
	ctx, stop := withSignals(cmd.Context(), nil)
	defer stop()
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if be, berr := a.backend(); berr == nil && benchOnBackend(be.driver, f.mode) {
		return a.runBenchBackend(ctx, cmd, f, be) // Redis, MySQL: bench_backend.go
	}

	url, err := a.requirePostgres("bench", "it measures the native adapter's COPY inserts and LISTEN/NOTIFY pick-up")
	if errors.Is(err, ErrNoDatabaseURL) {
		fmt.Fprintln(errw, "starting a throwaway PostgreSQL (default configuration) for the benchmark")
		srv, serr := localpg.Start(ctx, localpg.Options{Install: true})
		if serr != nil {
			return fmt.Errorf("no database URL was given and a throwaway PostgreSQL could not be started: %w", serr)
		}
		defer func() { err = errors.Join(err, srv.Stop()) }()
		if url, err = srv.CreateDatabase(ctx, "tasq_bench", ""); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := migrations.Up(ctx, url); err != nil {
		return err
	}
	ad, err := openPostgresURL(ctx, url)
	if err != nil {
		return err
	}
	defer ad.Close()
	otelOpts, otelMW, otelStop := benchOtel(f.otel)
	defer otelStop()
	f.metrics = newBenchProm(f.prom, ad)
	defer f.metrics.close()
	client, err := queue.NewClient(ad, append(otelOpts, f.metrics.clientOptions()...)...)
	if err != nil {
		return err
	}
	f.middleware = otelMW
	if f.noopMW {
		f.middleware = append(f.middleware, func(ctx context.Context, _ *queue.Attempt, next func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
			return next(ctx)
		})
	}
	if err := ad.SetQueueLimits(ctx, benchQueue, f.limits); err != nil {
		return fmt.Errorf("--max-running/--max-starts: %w", err)
	}
	if !f.limits.IsZero() {
		defer func() {
			err = errors.Join(err, ad.SetQueueLimits(context.WithoutCancel(ctx), benchQueue, queue.QueueLimits{}))
		}()
		fmt.Fprintf(errw, "queue %s limited: %s\n", benchQueue, describeLimits(f.limits))
	}
	con := newConsole(out, errw)
	b := &bench{f: f, ad: ad, src: ad, client: client, out: con.Out(), errw: con.Err(), con: con}
	b.markCompleted = b.pgCompletedFromNow
	stopProfiles, err := startProfiles(f.cpuProfile, f.memProfile)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopProfiles()) }()
	modes := []string{f.mode}
	switch f.mode {
	case "all":
		modes = []string{"burn-down", "continuous", "latency"}
	case "after-burn-down":
		modes = []string{"burn-down", "after-burn-down"}
	}
	for _, m := range modes {
		// after-burn-down's continuous run takes the table as the burn-down
		// left it: that is the point of it.
		if !f.keepTable && m != "after-burn-down" {
			if err := b.reset(ctx); err != nil {
				return err
			}
		}
		var res benchResult
		switch m {
		case "burn-down":
			res, err = b.burnDown(ctx, "burn-down")
		case "continuous":
			res, err = b.continuous(ctx, "continuous")
		case "after-burn-down":
			res, err = b.continuous(ctx, "continuous after burn-down")
			res.Phase = "after-burn-down"
		case "latency":
			res, err = b.latency(ctx)
		case "used-table":
			err = b.usedTable(ctx) // prints its own results
		case "notify":
			err = b.notify(ctx)
		case "soak":
			err = b.soak(ctx) // prints its own results
		case "outbox":
			err = b.outbox(ctx) // prints its own results
		case "scale-out":
			err = b.scaleOut(ctx, url) // prints its own results
		case "yardstick":
			err = b.yardstick(ctx) // prints its own results
		}
		if err != nil {
			return fmt.Errorf("bench %s: %w", m, err)
		}
		if res.Mode != "" {
			b.print(res)
		}
	}
	if f.keepTable {
		return nil
	}
	return b.reset(ctx)
}

type bench struct {
	f  *benchFlags
	ad *postgres.Adapter // nil on another backend (bench_backend.go)
	// src is the backend the workers claim from: ad, or the Redis or MySQL
	// adapter; markCompleted returns a counter of the benchmark's jobs
	// completed from now on.
	src           queue.Adapter
	markCompleted func(ctx context.Context) (count func(context.Context) (int64, error), err error)
	seq           atomic.Int64 // the payload number of the last job inserted
	client        *queue.Client
	out, errw     io.Writer
	con           *console
	lastStats     *tableStats // used-table's previous snapshot
}

// startProfiles starts the --cpuprofile Go CPU profile into cpuPath and
// creates the --memprofile file memPath (none when a path is empty; a path
// that cannot be written is refused before the run), and returns what stops
// the CPU profile and writes the allocation profile (every allocation since
// the process started, sampled).
func startProfiles(cpuPath, memPath string) (stop func() error, err error) {
	var mem *os.File
	if memPath != "" {
		if mem, err = os.Create(memPath); err != nil {
			return nil, fmt.Errorf("--memprofile: %w", err)
		}
	}
	stopCPU := func() {}
	if cpuPath != "" {
		pf, err := os.Create(cpuPath)
		if err == nil {
			if err = pprof.StartCPUProfile(pf); err != nil {
				pf.Close()
			}
		}
		if err != nil {
			if mem != nil {
				mem.Close()
			}
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		stopCPU = func() { pprof.StopCPUProfile(); pf.Close() }
	}
	return func() error {
		stopCPU()
		if mem == nil {
			return nil
		}
		err := pprof.Lookup("allocs").WriteTo(mem, 0)
		if cerr := mem.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("--memprofile: %w", err)
		}
		return nil
	}, nil
}

// reset removes the benchmark's jobs; when the table holds nothing else it
// truncates it, so every workload starts on an empty table (unless
// --keep-table, and never after-burn-down's continuous run). The VACUUM
// ANALYZE after it leaves the statistics of the table as they were: ANALYZE
// of an empty table keeps the old ones.
func (b *bench) reset(ctx context.Context) error {
	pool := b.ad.Pool()
	var others int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE queue <> $1`, benchQueue).Scan(&others); err != nil {
		return fmt.Errorf("count jobs: %w", err)
	}
	q := `TRUNCATE tasq_jobs`
	if others > 0 {
		q = `DELETE FROM tasq_jobs WHERE queue = '` + benchQueue + `'`
	}
	if _, err := pool.Exec(ctx, q); err != nil {
		return fmt.Errorf("clear benchmark jobs: %w", err)
	}
	_, err := pool.Exec(ctx, `VACUUM ANALYZE tasq_jobs`)
	return err
}

func (b *bench) newWorker(maxTasks int) (*worker.Worker, error) {
	reg := queue.NewRegistry()
	if err := errors.Join(queue.Register(reg, benchNoop{}), queue.Register(reg, benchLatency{})); err != nil {
		return nil, err
	}
	cfg := worker.Config{
		Queues: []string{benchQueue}, Concurrency: b.f.concurrency, MaxTasks: maxTasks, Middleware: slices.Clone(b.f.middleware),
		Logger: slog.New(slog.NewTextHandler(b.errw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	b.f.metrics.configure(&cfg)
	w, err := worker.New(b.src, reg, cfg)
	if err == nil {
		b.f.metrics.watch(w)
	}
	return w, err
}

// pgCompletedFromNow is markCompleted on PostgreSQL: it counts the
// benchmark queue's jobs finished since now, by the database's clock
// (finished_at is set by it), so that rows kept from earlier workloads
// (--keep-table) do not count.
func (b *bench) pgCompletedFromNow(ctx context.Context) (func(context.Context) (int64, error), error) {
	var since time.Time
	if err := b.ad.Pool().QueryRow(ctx, `SELECT now()`).Scan(&since); err != nil {
		return nil, err
	}
	return func(ctx context.Context) (int64, error) {
		var n int64
		err := b.ad.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE queue = $1 AND state = 'completed' AND finished_at >= $2`,
			benchQueue, since).Scan(&n)
		return n, err
	}, nil
}

// insert dispatches n no-op jobs in batches and returns the rate.
// dispatchOpts are the options of every benchmark dispatch: --unique's.
func (b *bench) dispatchOpts() []queue.DispatchOption {
	if !b.f.unique {
		return nil
	}
	return []queue.DispatchOption{queue.WithUnique(queue.UniqueOpts{ByPayload: true})}
}

func (b *bench) insert(ctx context.Context, n int) (float64, error) {
	start := time.Now()
	var next atomic.Int64 // the end of the last share of jobs handed out
	batch := int64(b.f.batch)
	loop := func() error {
		for {
			end := next.Add(batch)
			size := min(batch, int64(n)-(end-batch))
			if size <= 0 {
				return nil
			}
			tasks := make([]any, size)
			for i := range tasks {
				tasks[i] = benchNoop{N: int(b.seq.Add(1))} // distinct across calls: --unique keys by payload
			}
			if _, err := b.client.DispatchMany(ctx, tasks, b.dispatchOpts()...); err != nil {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, max(1, min(b.f.inserters, (n+b.f.batch-1)/b.f.batch)))
	for k := range errs {
		wg.Go(func() { errs[k] = loop() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// progress prints the completed count and rate every 2 s until stop is
// closed; on a terminal a live status line also shows the rate of the last
// 2 s, redrawn five times a second.
func (b *bench) progress(mode string, w *worker.Worker, total int64, stop <-chan struct{}) {
	tick := 2 * time.Second
	if b.con.TTY() {
		tick = 200 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	defer b.con.ClearStatus()
	start := time.Now()
	of := ""
	if total > 0 {
		of = fmt.Sprintf("/%d", total)
	}
	type sample struct {
		at   time.Time
		done int64
	}
	window := []sample{{start, 0}}
	lastLine := start
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now, st := time.Now(), w.Stats()
		done := st.Completed
		for len(window) > 1 && now.Sub(window[1].at) >= 2*time.Second {
			window = window[1:]
		}
		rate := float64(done-window[0].done) / now.Sub(window[0].at).Seconds()
		window = append(window, sample{now, done})
		line := fmt.Sprintf("[tasq] %s: %d%s done, %.0f jobs/s (last 2s), %.0fs elapsed", mode, done, of, rate, now.Sub(start).Seconds())
		if st.Stuck > 0 || st.LostLeases > 0 {
			// Neither happens to the bench's quick jobs on a healthy server;
			// when it does, the rate above is not the whole story.
			line += fmt.Sprintf(", %d stuck past their timeout, %d leases lost", st.Stuck, st.LostLeases)
		}
		if now.Sub(lastLine) >= 2*time.Second-tick/2 {
			lastLine = now
			b.con.ClearStatus()
			fmt.Fprintln(b.errw, line)
		} else if b.con.TTY() {
			b.con.SetStatus(line)
		}
	}
}

// burnDown inserts b.f.n jobs and works them all; label names the run in the
// progress lines. It counts only jobs finished from its own start, so it can
// run on a table that holds other finished jobs (used-table).
func (b *bench) burnDown(ctx context.Context, label string) (benchResult, error) {
	n := b.f.n
	countCompleted, err := b.markCompleted(ctx)
	if err != nil {
		return benchResult{}, err
	}
	fmt.Fprintf(b.errw, "[tasq] %s: inserting %d jobs in batches of %d\n", label, n, b.f.batch)
	insertRate, err := b.insert(ctx, n)
	if err != nil {
		return benchResult{}, err
	}
	fmt.Fprintf(b.errw, "[tasq] %s: inserted at %.0f jobs/s; working them with concurrency %d\n", label, insertRate, b.f.concurrency)
	w, err := b.newWorker(n)
	if err != nil {
		return benchResult{}, err
	}
	stop := make(chan struct{})
	go b.progress(label, w, int64(n), stop)
	start := time.Now()
	err = w.Run(ctx)
	el := time.Since(start)
	close(stop)
	if err != nil {
		return benchResult{}, err
	}
	completed, err := countCompleted(ctx)
	if err != nil {
		return benchResult{}, err
	}
	if completed != int64(n) {
		return benchResult{}, fmt.Errorf("%d of %d jobs completed (interrupted?)", completed, n)
	}
	return benchResult{System: "tasq", Mode: "burn-down", Jobs: completed, Seconds: el.Seconds(),
		JobsPerSec: float64(completed) / el.Seconds(), InsertPerSec: insertRate, Concurrency: b.f.concurrency}, nil
}

// continuous keeps a backlog of about 20,000 jobs for the duration while a
// worker drains it, and reports the completion rate over the window.
func (b *bench) continuous(ctx context.Context, label string) (benchResult, error) {
	const backlog = 20000
	w, err := b.newWorker(0)
	if err != nil {
		return benchResult{}, err
	}
	if _, err := b.insert(ctx, backlog); err != nil {
		return benchResult{}, err
	}
	inserted := int64(backlog)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	stop := make(chan struct{})
	go b.progress(label, w, 0, stop)
	start := time.Now()
	deadline := start.Add(b.f.duration)
	var insertTime time.Duration
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if inserted-w.Stats().Completed >= backlog {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		t0 := time.Now()
		if _, err := b.insert(ctx, b.f.batch); err != nil {
			close(stop)
			return benchResult{}, err
		}
		insertTime += time.Since(t0)
		inserted += int64(b.f.batch)
	}
	done := w.Stats().Completed
	el := time.Since(start)
	close(stop)
	cancel()
	if err := <-runErr; err != nil {
		return benchResult{}, err
	}
	if ctx.Err() != nil {
		return benchResult{}, ctx.Err()
	}
	res := benchResult{System: "tasq", Mode: "continuous", Jobs: done, Seconds: el.Seconds(),
		JobsPerSec: float64(done) / el.Seconds(), Concurrency: b.f.concurrency}
	if insertTime > 0 {
		res.InsertPerSec = float64(inserted-backlog) / insertTime.Seconds()
	}
	return res, nil
}

// latency dispatches single jobs at a fixed rate and measures how long each
// waits from the start of its dispatch to the start of its Handle.
func (b *bench) latency(ctx context.Context) (benchResult, error) {
	w, err := b.newWorker(0)
	if err != nil {
		return benchResult{}, err
	}
	rec := &latencyRecorder{}
	wctx, cancel := context.WithCancel(context.WithValue(ctx, latencyKey{}, rec))
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	start := time.Now()
	rec.after = start.Add(time.Second).UnixNano() // one second of warm-up
	// calls records how long each Dispatch call took (its commit included):
	// the part of the pick-up latency spent before the job is visible.
	calls := &latencyRecorder{after: rec.after}
	fmt.Fprintf(b.errw, "[tasq] latency: dispatching %d jobs/s for %v (first second is warm-up)\n", b.f.rate, b.f.latencyFor)
	tick := time.NewTicker(time.Second / time.Duration(b.f.rate))
	defer tick.Stop()
	// Each dispatch is its own transaction (a commit waits for the disk), so
	// dispatches overlap, up to --latency-dispatchers at a time (4, as the
	// River peer does by default), to keep the rate.
	var sent int64
	var dispatchErr atomic.Pointer[error]
	inflight := make(chan struct{}, b.f.latencyDispatchers)
	var dispatches sync.WaitGroup
	deadline := start.Add(b.f.latencyFor)
	for time.Now().Before(deadline) && ctx.Err() == nil && dispatchErr.Load() == nil {
		<-tick.C
		inflight <- struct{}{}
		sent++
		dispatches.Go(func() {
			defer func() { <-inflight }()
			sent := time.Now()
			if _, err := b.client.Dispatch(ctx, benchLatency{SentAt: sent.UnixNano()}, b.dispatchOpts()...); err != nil {
				dispatchErr.CompareAndSwap(nil, &err)
				return
			}
			calls.add(time.Since(sent), sent.UnixNano())
		})
	}
	dispatches.Wait()
	dispatchedFor := time.Since(start)
	if p := dispatchErr.Load(); p != nil {
		return benchResult{}, *p
	}
	// Let the last jobs start.
	for wait := time.Now().Add(10 * time.Second); rec.seen.Load() < sent && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-runErr; err != nil {
		return benchResult{}, err
	}
	if ctx.Err() != nil {
		return benchResult{}, ctx.Err()
	}
	if seen := rec.seen.Load(); seen < sent {
		return benchResult{}, fmt.Errorf("%d of %d jobs dispatched started within 10 s of the last dispatch", seen, sent)
	}
	rec.mu.Lock()
	samples := slices.Clone(rec.samples)
	rec.mu.Unlock()
	if len(samples) == 0 {
		return benchResult{}, errors.New("no job started after the warm-up")
	}
	pct := func(p float64) float64 { return ms(percentile(samples, p)) }
	el := time.Since(start)
	return benchResult{System: "tasq", Mode: "latency", Jobs: int64(len(samples)), Seconds: el.Seconds(),
		P50ms: pct(0.50), P95ms: pct(0.95), P99ms: pct(0.99), RatePerSecond: b.f.rate, Concurrency: b.f.concurrency,
		Dispatchers: b.f.latencyDispatchers, DispatchedPerSec: float64(sent) / dispatchedFor.Seconds(),
		DispatchP50ms: ms(percentile(calls.samples, 0.50)), DispatchP99ms: ms(percentile(calls.samples, 0.99))}, nil
}

func (b *bench) print(r benchResult) {
	switch r.Mode {
	case "burn-down":
		fmt.Fprintf(b.out, "tasq burn-down:  %d jobs in %.2fs = %.0f jobs/s worked; inserted at %.0f jobs/s (DispatchMany, batches of %d)\n",
			r.Jobs, r.Seconds, r.JobsPerSec, r.InsertPerSec, b.f.batch)
	case "continuous":
		on := ""
		if r.Phase == "after-burn-down" {
			on = " (after the burn-down, same table, no vacuum)"
		}
		fmt.Fprintf(b.out, "tasq continuous: %d jobs in %.2fs = %.0f jobs/s worked while inserting%s\n", r.Jobs, r.Seconds, r.JobsPerSec, on)
	case "latency":
		fmt.Fprintf(b.out, "tasq latency:    %d jobs at %d/s (%.0f/s achieved, %d dispatchers): dispatch-to-start p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (the Dispatch call itself: p50 %.2f ms, p99 %.2f ms)\n",
			r.Jobs, r.RatePerSecond, r.DispatchedPerSec, r.Dispatchers, r.P50ms, r.P95ms, r.P99ms, r.DispatchP50ms, r.DispatchP99ms)
	}
	if b.f.json {
		j, _ := json.Marshal(r)
		fmt.Fprintf(b.out, "RESULT %s\n", j)
	}
}
