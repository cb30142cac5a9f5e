// Command river runs TasQ's benchmark workloads against River
// (github.com/riverqueue/river), used as a library, so that TasQ and River can
// be compared on the same machine and the same PostgreSQL database.
//
// It is its own Go module and is never imported by TasQ. Usage:
//
//	go run . --database-url postgres://... --mode burn-down|continuous|latency|after-burn-down|scale-out [flags]
//
// scale-out runs a burn-down of -n jobs for each count in --processes
// (default 1,2,4), worked by that many River processes, one client each
// (the binary restarts itself with --child); see scaleout.go.
//
// Each run starts on emptied River tables (TRUNCATE) unless --keep-table is
// given. after-burn-down runs a burn-down of -n jobs and then continuous on
// the same table, with no TRUNCATE and no VACUUM between them; its RESULT
// line is the continuous run's, with phase "after-burn-down".
//
// Progress goes to stderr; results go to stdout. With --json the last line on
// stdout is `RESULT {...}`, one JSON object (see [result]).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// config holds the parsed command-line flags.
type config struct {
	databaseURL string
	mode        string
	n           int           // burn-down: number of jobs
	duration    time.Duration // continuous and latency: length of the run
	rate        int           // latency: jobs dispatched per second
	dispatchers int           // latency: goroutines issuing the inserts
	json        bool          // print the RESULT line
	keepTable   bool          // no TRUNCATE before the workload
	processes   []int         // scale-out: River processes per burn-down
	child       bool          // scale-out: run as a worker child (scaleout.go)
}

// result is the machine-readable outcome of one run, printed as
// `RESULT {json}`. Fields that do not apply to a mode are omitted.
type result struct {
	System           string   `json:"system"`
	Mode             string   `json:"mode"`
	Jobs             int64    `json:"jobs"`
	Seconds          float64  `json:"seconds"`
	JobsPerSec       float64  `json:"jobs_per_sec"`
	InsertJobsPerSec *float64 `json:"insert_jobs_per_sec,omitempty"`
	P50Ms            *float64 `json:"p50_ms,omitempty"`
	P95Ms            *float64 `json:"p95_ms,omitempty"`
	P99Ms            *float64 `json:"p99_ms,omitempty"`
	Phase            string   `json:"phase,omitempty"`
	// latency: the offered rate, the dispatching goroutines, and the rate
	// the dispatches achieved (sent / dispatch seconds; below Rate when the
	// dispatchers could not keep up)
	Rate             int     `json:"rate,omitempty"`
	Dispatchers      int     `json:"dispatchers,omitempty"`
	DispatchedPerSec float64 `json:"dispatched_per_sec,omitempty"`
	// scale-out: processes, and CPU seconds of the River processes and of
	// PostgreSQL's during the work
	Processes   int      `json:"processes,omitempty"`
	WorkerCPU   *float64 `json:"worker_cpu_s,omitempty"`
	PostgresCPU *float64 `json:"postgres_cpu_s,omitempty"`
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "[river] error:", err)
		os.Exit(2)
	}

	// Ctrl-C cancels the run; the workloads still stop the client gracefully.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.child {
		if err := runChild(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "[river] child error:", err)
			os.Exit(1)
		}
		return
	}
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "[river] error:", err)
		os.Exit(1)
	}
	if cfg.json {
		printResult(res)
	}
}

// printResult prints res as a `RESULT {json}` line.
func printResult(res result) {
	line, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "[river] error: encoding result:", err)
		os.Exit(1)
	}
	fmt.Printf("RESULT %s\n", line)
}

// parseFlags parses and validates the command line.
func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("river-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.databaseURL, "database-url", os.Getenv("TASQ_DATABASE_URL"), "PostgreSQL URL (default $TASQ_DATABASE_URL)")
	fs.StringVar(&cfg.mode, "mode", "burn-down", "workload: burn-down, continuous, latency, after-burn-down (burn-down, then continuous on the same table) or scale-out (burn-downs by 1, 2, 4 processes: --processes)")
	fs.BoolVar(&cfg.keepTable, "keep-table", false, "do not TRUNCATE the River tables first: run on the table as the previous run left it")
	fs.IntVar(&cfg.n, "n", 200_000, "burn-down: number of jobs to insert and work")
	fs.DurationVar(&cfg.duration, "duration", 0, "continuous/latency: run length (default 20s / 10s)")
	fs.IntVar(&cfg.rate, "rate", 500, "latency: jobs dispatched per second")
	fs.IntVar(&cfg.dispatchers, "dispatchers", 4, "latency: goroutines issuing single-job inserts (1 = strictly one at a time)")
	fs.BoolVar(&cfg.json, "json", false, "print a final `RESULT {json}` line on stdout")
	processes := fs.String("processes", "1,2,4", "scale-out: River processes (one client each), one burn-down of -n jobs per count")
	fs.BoolVar(&cfg.child, "child", false, "internal: run as a scale-out worker process")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.child {
		return cfg, nil
	}
	var err error
	if cfg.processes, err = parseCounts(*processes); err != nil {
		return cfg, err
	}

	if cfg.databaseURL == "" {
		return cfg, errors.New("no database URL: pass --database-url or set TASQ_DATABASE_URL")
	}
	switch cfg.mode {
	case "burn-down", "scale-out":
		if cfg.n <= 0 {
			return cfg, fmt.Errorf("-n must be positive, got %d", cfg.n)
		}
	case "continuous", "after-burn-down":
		if cfg.mode == "after-burn-down" && cfg.n <= 0 {
			return cfg, fmt.Errorf("-n must be positive, got %d", cfg.n)
		}
		if cfg.duration == 0 {
			cfg.duration = 20 * time.Second
		}
	case "latency":
		if cfg.duration == 0 {
			cfg.duration = 10 * time.Second
		}
		if cfg.rate <= 0 {
			return cfg, fmt.Errorf("--rate must be positive, got %d", cfg.rate)
		}
		if cfg.dispatchers <= 0 {
			return cfg, fmt.Errorf("--dispatchers must be positive, got %d", cfg.dispatchers)
		}
		if cfg.duration <= latencyWarmup {
			return cfg, fmt.Errorf("--duration must be longer than the %s warm-up", latencyWarmup)
		}
	default:
		return cfg, fmt.Errorf("unknown --mode %q (want burn-down, continuous, latency, after-burn-down or scale-out)", cfg.mode)
	}
	if cfg.duration < 0 {
		return cfg, fmt.Errorf("--duration must be positive, got %s", cfg.duration)
	}
	return cfg, nil
}

// run connects, prepares River's schema, empties its job table (unless
// --keep-table) and runs the chosen workload.
func run(ctx context.Context, cfg config) (result, error) {
	pool, err := openPool(ctx, cfg.databaseURL)
	if err != nil {
		return result{}, err
	}
	defer pool.Close()

	driver := newDriver(pool)
	if err := migrate(ctx, driver); err != nil {
		return result{}, err
	}
	if !cfg.keepTable {
		if err := resetTables(ctx, pool); err != nil {
			return result{}, err
		}
	}

	b := &bench{pool: pool, driver: driver, worker: &noopWorker{}}
	var res result
	switch cfg.mode {
	case "burn-down":
		res, err = b.burnDown(ctx, cfg.n)
	case "continuous":
		res, err = b.continuous(ctx, cfg.duration)
	case "latency":
		res, err = b.latency(ctx, cfg.duration, cfg.rate, cfg.dispatchers)
	case "scale-out":
		res, err = b.scaleOut(ctx, cfg.databaseURL, cfg.n, cfg.processes)
	case "after-burn-down":
		// The continuous run takes the table as the burn-down left it: no
		// TRUNCATE, no VACUUM, autovacuum's own only.
		if _, err = b.burnDown(ctx, cfg.n); err == nil {
			res, err = b.continuous(ctx, cfg.duration)
			res.Phase = "after-burn-down"
		}
	}
	if err != nil {
		return result{}, err
	}
	res.System, res.Mode = "river", cfg.mode
	if cfg.mode == "after-burn-down" {
		res.Mode = "continuous"
	}
	return res, nil
}

// newDriver is River's pgx v5 driver on pool.
func newDriver(pool *pgxpool.Pool) *riverpgxv5.Driver { return riverpgxv5.New(pool) }

// openPool opens a pgx pool and checks that the database answers. Like
// River's own CLI it keeps pgxpool's default size (max(4, CPUs)); add
// pool_max_conns=N to the URL to change it.
func openPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL: %w", err)
	}
	if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "tasq-bench-river"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("opening database pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach database %s:%d/%s: %w",
			pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// migrate applies River's own migrations (rivermigrate up).
func migrate(ctx context.Context, driver *riverpgxv5.Driver) error {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: newLogger()})
	if err != nil {
		return fmt.Errorf("creating River migrator: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("running River migrations: %w", err)
	}
	if len(res.Versions) > 0 {
		fmt.Fprintf(os.Stderr, "[river] applied %d River migration(s)\n", len(res.Versions))
	}
	return nil
}

// resetTables empties the River tables that hold jobs (and their insert
// notifications), so each run starts from a clean, compact table.
func resetTables(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "TRUNCATE river_job, river_notification"); err != nil {
		return fmt.Errorf("truncating River tables: %w", err)
	}
	return nil
}

// countFinished counts jobs that reached a final state, straight from the
// table. It backs up the event subscription if River ever drops events.
func countFinished(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx,
		"SELECT count(*) FROM river_job WHERE state IN ('completed', 'discarded', 'cancelled')").Scan(&n)
	return n, err
}

// newClient builds a River client configured as River's own benchmark
// (cmd/river bench) configures it: 2000 workers on the default queue,
// FetchCooldown 2ms, FetchPollInterval 20ms, the default completer.
func newClient(driver *riverpgxv5.Driver, worker *noopWorker) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, worker)
	client, err := river.NewClient(driver, &river.Config{
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            newLogger(),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2_000}},
		Workers:           workers,
	})
	if err != nil {
		return nil, fmt.Errorf("creating River client: %w", err)
	}
	return client, nil
}

// newLogger returns the logger handed to River: warnings and errors only, on
// stderr, so that dropped subscription events would be visible.
func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// round rounds x to the given number of decimal places.
func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}

// ptr returns a pointer to v (for optional result fields).
func ptr(v float64) *float64 { return &v }
