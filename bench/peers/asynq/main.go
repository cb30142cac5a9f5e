// Command asynq runs TasQ's benchmark workloads against asynq
// (github.com/hibiken/asynq), used as a library, so that TasQ's Redis
// adapter and asynq can be compared on the same machine and the same Redis.
//
// It is its own Go module and is never imported by TasQ. Usage:
//
//	go run . --database-url redis://127.0.0.1:6379/0 --mode burn-down|continuous|latency [flags]
//
// Progress goes to stderr; results go to stdout. With --json the last line on
// stdout is `RESULT {...}`, one JSON object (see [result]), in the same shape
// as the River peer's.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// config holds the parsed command-line flags.
type config struct {
	databaseURL       string
	mode              string
	n                 int           // burn-down: number of jobs
	duration          time.Duration // continuous and latency: length of the run
	rate              int           // latency: jobs dispatched per second
	dispatchers       int           // latency: goroutines issuing the enqueues
	enqueuers         int           // burn-down, continuous: goroutines issuing Enqueue calls
	concurrency       int           // asynq.Config.Concurrency
	taskCheckInterval time.Duration // asynq.Config.TaskCheckInterval
	json              bool          // print the RESULT line
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
	Concurrency      int      `json:"concurrency,omitempty"`
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "[asynq] error:", err)
		os.Exit(2)
	}
	// Ctrl-C cancels the run; the workloads still shut the server down.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "[asynq] error:", err)
		os.Exit(1)
	}
	if cfg.json {
		line, err := json.Marshal(res)
		if err != nil {
			fmt.Fprintln(os.Stderr, "[asynq] error: encoding result:", err)
			os.Exit(1)
		}
		fmt.Printf("RESULT %s\n", line)
	}
}

// parseFlags parses and validates the command line.
func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("asynq-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.databaseURL, "database-url", os.Getenv("TASQ_REDIS_URL"), "Redis URL, redis://host:port/db (default $TASQ_REDIS_URL)")
	fs.StringVar(&cfg.mode, "mode", "burn-down", "workload: burn-down, continuous or latency")
	fs.IntVar(&cfg.n, "n", 200_000, "burn-down: number of jobs to enqueue and work")
	fs.DurationVar(&cfg.duration, "duration", 0, "continuous/latency: run length (default 20s / 10s)")
	fs.IntVar(&cfg.rate, "rate", 500, "latency: jobs enqueued per second")
	fs.IntVar(&cfg.dispatchers, "dispatchers", 4, "latency: goroutines issuing single Enqueue calls (1 = strictly one at a time)")
	fs.IntVar(&cfg.enqueuers, "enqueuers", 20, "burn-down/continuous: goroutines issuing Enqueue calls at once (asynq has no batch enqueue; 20 = go-redis's default pool size on 2 CPUs)")
	fs.IntVar(&cfg.concurrency, "concurrency", 2000, "asynq.Config.Concurrency: handlers running at once (TasQ's and River's benchmarks use 2000)")
	fs.DurationVar(&cfg.taskCheckInterval, "task-check-interval", time.Second, "asynq.Config.TaskCheckInterval: how long the processor sleeps when the queue is empty (asynq's default 1s)")
	fs.BoolVar(&cfg.json, "json", false, "print a final `RESULT {json}` line on stdout")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.databaseURL == "" {
		return cfg, errors.New("no Redis URL: pass --database-url or set TASQ_REDIS_URL")
	}
	if cfg.enqueuers <= 0 || cfg.concurrency <= 0 || cfg.taskCheckInterval <= 0 {
		return cfg, errors.New("--enqueuers, --concurrency and --task-check-interval must be positive")
	}
	switch cfg.mode {
	case "burn-down":
		if cfg.n <= 0 {
			return cfg, fmt.Errorf("-n must be positive, got %d", cfg.n)
		}
	case "continuous":
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
		return cfg, fmt.Errorf("unknown --mode %q (want burn-down, continuous or latency)", cfg.mode)
	}
	if cfg.duration < 0 {
		return cfg, fmt.Errorf("--duration must be positive, got %s", cfg.duration)
	}
	return cfg, nil
}

// run connects, deletes asynq's keys and runs the chosen workload.
func run(ctx context.Context, cfg config) (result, error) {
	opt, err := goredis.ParseURL(cfg.databaseURL)
	if err != nil {
		return result{}, fmt.Errorf("parsing Redis URL: %w", err)
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		return result{}, fmt.Errorf("cannot reach Redis at %s: %w", opt.Addr, err)
	}
	if err := resetKeys(ctx, rdb); err != nil {
		return result{}, err
	}
	b := &bench{rdb: rdb, cfg: cfg}
	var res result
	switch cfg.mode {
	case "burn-down":
		res, err = b.burnDown(ctx, cfg.n)
	case "continuous":
		res, err = b.continuous(ctx, cfg.duration)
	case "latency":
		res, err = b.latency(ctx, cfg.duration, cfg.rate, cfg.dispatchers)
	}
	if err != nil {
		return result{}, err
	}
	res.System, res.Mode, res.Concurrency = "asynq", cfg.mode, cfg.concurrency
	return res, nil
}

// resetKeys deletes every asynq key ("asynq:*": queues, tasks, server and
// worker records, statistics), so each run starts from an empty Redis as
// far as asynq is concerned. It destroys asynq tasks in that database.
func resetKeys(ctx context.Context, rdb *goredis.Client) error {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "asynq:*", 1000).Result()
		if err != nil {
			return fmt.Errorf("deleting asynq keys: %w", err)
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("deleting asynq keys: %w", err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// round rounds x to the given number of decimal places.
func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}

// ptr returns a pointer to v (for optional result fields).
func ptr(v float64) *float64 { return &v }
