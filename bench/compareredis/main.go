// Command compareredis runs `tasq bench` on Redis and the asynq peer
// benchmark (bench/peers/asynq, a module of its own) back to back against the
// same Redis, and prints each workload's runs with their median, spread and
// the ratio of the medians. `make bench-compare-redis` runs it.
//
// Without TASQ_REDIS_URL it starts a throwaway redis-server (no persistence)
// on a free port of 127.0.0.1 from the local binary and flushes it before
// every run. With TASQ_REDIS_URL it never flushes: each benchmark deletes
// only its own keys (tasq bench: <key_prefix>bench:*, default tasq:bench:*;
// the asynq peer: asynq:*).
//
// With --mysql-url (or TASQ_MYSQL_URL) it also runs tasq bench on that MySQL
// or MariaDB database, for the record (it deletes only the jobs of its queue
// tasq_bench there).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/internal/freeport"

	"github.com/tasqhq/tasq/bench/internal/peerrun"
)

// result is a RESULT line of either benchmark.
type result = peerrun.Result

// options are the command-line flags.
type options struct {
	n                 int
	dur, latFor       time.Duration
	rate, runs        int
	concurrency       int
	inserters         int
	taskCheckInterval string
	mysqlURL          string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 100000, "burn-down job count")
	flag.DurationVar(&o.dur, "duration", 20*time.Second, "continuous run length")
	flag.DurationVar(&o.latFor, "latency-duration", 10*time.Second, "latency run length")
	flag.IntVar(&o.rate, "rate", 500, "latency: jobs per second")
	flag.IntVar(&o.runs, "runs", 3, "back-to-back runs per system and workload")
	flag.IntVar(&o.concurrency, "concurrency", 2000, "worker concurrency of both (tasq bench --concurrency, asynq Config.Concurrency)")
	flag.IntVar(&o.inserters, "inserters", 1, "burn-down insert: DispatchMany calls of 1,000 jobs in flight at once for TasQ (tasq bench --inserters; the asynq peer keeps 20 single Enqueue calls in flight)")
	flag.StringVar(&o.taskCheckInterval, "asynq-task-check-interval", "", "asynq Config.TaskCheckInterval (empty: the peer's default, asynq's own 1s)")
	flag.StringVar(&o.mysqlURL, "mysql-url", os.Getenv("TASQ_MYSQL_URL"), "also run tasq bench on this MySQL/MariaDB database, for the record (default $TASQ_MYSQL_URL; empty: skip)")
	flag.Parse()
	if o.runs <= 0 || o.n <= 0 || o.rate <= 0 || o.concurrency <= 0 || o.inserters <= 0 {
		fmt.Fprintln(os.Stderr, "bench-compare-redis: -n, --rate, --runs, --concurrency and --inserters must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-compare-redis:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) (err error) {
	root, err := peerrun.RepoRoot("asynq")
	if err != nil {
		return err
	}
	url, flush := os.Getenv("TASQ_REDIS_URL"), false
	if url == "" {
		fmt.Fprintln(os.Stderr, "starting a throwaway redis-server (no persistence) on 127.0.0.1")
		srv, err := startRedis(ctx)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, srv.stop()) }()
		url, flush = srv.url, true
	}
	peerURL, err := withoutKeyPrefix(url) // go-redis (the peer's, and ours) rejects tasq's key_prefix
	if err != nil {
		return err
	}
	opt, err := goredis.ParseURL(peerURL)
	if err != nil {
		return fmt.Errorf("TASQ_REDIS_URL: %w", err)
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()

	// Build both first, so compilation is not measured and does not compete.
	tasqBin := filepath.Join(os.TempDir(), fmt.Sprintf("tasq-bench-redis-%d", os.Getpid()))
	peerBin := tasqBin + "-asynq"
	defer os.Remove(tasqBin)
	defer os.Remove(peerBin)
	if err := peerrun.Command(ctx, root, nil, "go", "build", "-o", tasqBin, "./cmd/tasq").Run(); err != nil {
		return fmt.Errorf("build tasq: %w", err)
	}
	if err := peerrun.Command(ctx, filepath.Join(root, "bench/peers/asynq"), nil, "go", "build", "-o", peerBin, ".").Run(); err != nil {
		return fmt.Errorf("build the asynq peer: %w", err)
	}
	// URLs reach the children through their environment, never their
	// command lines (which every local user can read with ps).
	redisEnv := []string{"TASQ_DATABASE_URL=" + url, "TASQ_REDIS_URL=" + peerURL}
	conc := strconv.Itoa(o.concurrency)
	type mode struct {
		name       string
		tasq, peer []string
	}
	modes := []mode{
		{"burn-down", []string{"-n", fmt.Sprint(o.n), "--inserters", fmt.Sprint(o.inserters)}, []string{"-n", fmt.Sprint(o.n)}},
		{"continuous", []string{"--duration", o.dur.String()}, []string{"--duration", o.dur.String()}},
		{"latency", []string{"--latency-duration", o.latFor.String(), "--rate", fmt.Sprint(o.rate)}, []string{"--duration", o.latFor.String(), "--rate", fmt.Sprint(o.rate)}},
	}
	peerExtra := []string{"--concurrency", conc}
	if o.taskCheckInterval != "" {
		peerExtra = append(peerExtra, "--task-check-interval", o.taskCheckInterval)
	}
	all := map[string]map[string][]result{"tasq": {}, "asynq": {}, "tasq-mysql": {}}
	for _, m := range modes {
		for i := range o.runs {
			for _, sys := range []string{"tasq", "asynq"} {
				if flush {
					if err := rdb.FlushAll(ctx).Err(); err != nil {
						return fmt.Errorf("flush the throwaway Redis: %w", err)
					}
				}
				bin, args := tasqBin, append([]string{"bench", "--mode", m.name, "--json", "--concurrency", conc}, m.tasq...)
				if sys == "asynq" {
					bin, args = peerBin, append(append([]string{"--mode", m.name, "--json"}, peerExtra...), m.peer...)
				}
				fmt.Fprintf(os.Stderr, "\n== %s %s, run %d of %d\n", sys, m.name, i+1, o.runs)
				r, err := peerrun.RunOne(ctx, root, redisEnv, bin, args)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sys, m.name, err)
				}
				all[sys][m.name] = append(all[sys][m.name], r)
			}
		}
	}
	if o.mysqlURL != "" {
		env := []string{"TASQ_DATABASE_URL=" + mysqlURL(o.mysqlURL)}
		for _, m := range modes {
			for i := range o.runs {
				fmt.Fprintf(os.Stderr, "\n== tasq on mysql %s, run %d of %d\n", m.name, i+1, o.runs)
				r, err := peerrun.RunOne(ctx, root, env, tasqBin, append([]string{"bench", "--mode", m.name, "--json", "--concurrency", conc}, m.tasq...))
				if err != nil {
					return fmt.Errorf("tasq on mysql %s: %w", m.name, err)
				}
				all["tasq-mysql"][m.name] = append(all["tasq-mysql"][m.name], r)
			}
		}
	}
	printTable(all, o)
	return nil
}

// mysqlURL adds the mysql:// prefix to a bare go-sql-driver DSN, so that
// tasq picks the MySQL backend from the URL.
func mysqlURL(dsn string) string {
	if strings.HasPrefix(dsn, "mysql://") {
		return dsn
	}
	return "mysql://" + dsn
}

// withoutKeyPrefix drops tasq's key_prefix parameter, which go-redis
// rejects, from a Redis URL.
func withoutKeyPrefix(raw string) (string, error) {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "", errors.New("TASQ_REDIS_URL does not parse as a URL")
	}
	q := u.Query()
	q.Del("key_prefix")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// stat is the median and the range of a measurement over the runs.
type stat struct{ med, lo, hi float64 }

func summarize(rs []result, f func(result) float64) stat {
	if len(rs) == 0 {
		return stat{}
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{med, v[0], v[len(v)-1]}
}

func (s stat) String() string {
	if s.med == 0 && s.hi == 0 {
		return "-"
	}
	prec := 0
	if s.hi < 100 {
		prec = 2
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, s.med, prec, s.lo, prec, s.hi)
}

func printTable(all map[string]map[string][]result, o options) {
	ratio := func(a, b stat) string {
		if b.med == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", a.med/b.med)
	}
	rows := []struct {
		label, mode string
		f           func(result) float64
		inverse     bool // lower is better: the ratio is asynq / TasQ
	}{
		{"burn-down, jobs/s", "burn-down", func(r result) float64 { return r.JobsPerSec }, false},
		{"continuous, jobs/s", "continuous", func(r result) float64 { return r.JobsPerSec }, false},
		{"insert (burn-down), jobs/s", "burn-down", func(r result) float64 { return r.InsertPerSec }, false},
		{fmt.Sprintf("pick-up latency at %d/s, p50 ms", o.rate), "latency", func(r result) float64 { return r.P50 }, true},
		{fmt.Sprintf("pick-up latency at %d/s, p95 ms", o.rate), "latency", func(r result) float64 { return r.P95 }, true},
		{fmt.Sprintf("pick-up latency at %d/s, p99 ms", o.rate), "latency", func(r result) float64 { return r.P99 }, true},
	}
	withMySQL := len(all["tasq-mysql"]) > 0
	fmt.Printf("\n%d run(s) each, median (min–max); concurrency %d; one Redis for both\n\n", o.runs, o.concurrency)
	head, rule := "| measurement | TasQ on Redis | asynq | TasQ / asynq |", "|---|---|---|---|"
	if withMySQL {
		head, rule = head+" TasQ on MySQL |", rule+"---|"
	}
	fmt.Println(head)
	fmt.Println(rule)
	for _, row := range rows {
		t, a := summarize(all["tasq"][row.mode], row.f), summarize(all["asynq"][row.mode], row.f)
		r := ratio(t, a)
		if row.inverse {
			r = ratio(a, t) + " (asynq / TasQ)"
		}
		line := fmt.Sprintf("| %s | %s | %s | %s |", row.label, t, a, r)
		if withMySQL {
			line += fmt.Sprintf(" %s |", summarize(all["tasq-mysql"][row.mode], row.f))
		}
		fmt.Println(line)
	}
}

// redisServer is a throwaway redis-server started by startRedis.
type redisServer struct {
	cmd    *exec.Cmd
	dir    string
	url    string
	exited chan struct{}
}

// startRedis starts redis-server on a free port of 127.0.0.1, without
// persistence, in a temporary directory, and waits until it answers.
func startRedis(ctx context.Context) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (apt-get install -y redis-server), or set TASQ_REDIS_URL: %w", err)
	}
	dir, err := os.MkdirTemp("", "tasq-bench-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		port, err := freeport.Loopback()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s := &redisServer{dir: dir, exited: make(chan struct{}),
			url: "redis://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/0"}
		s.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--protected-mode", "yes", "--logfile", filepath.Join(dir, "redis.log"))
		s.cmd.Dir = dir
		if err := s.cmd.Start(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		go func() { _ = s.cmd.Wait(); close(s.exited) }()
		if lastErr = s.waitReady(ctx); lastErr == nil {
			return s, nil
		}
		_ = s.stop()
		if dir, err = os.MkdirTemp("", "tasq-bench-redis-"); err != nil {
			return nil, err
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func (s *redisServer) waitReady(ctx context.Context) error {
	opt, _ := goredis.ParseURL(s.url)
	opt.MaxRetries = -1
	c := goredis.NewClient(opt)
	defer c.Close()
	for deadline := time.Now().Add(20 * time.Second); ; {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server exited at start: %s", log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within 20s: %w", err)
		}
	}
}

// stop sends SIGTERM to the server's pid, waits for it (SIGKILL after
// 10 s) and removes its directory.
func (s *redisServer) stop() error {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	return os.RemoveAll(s.dir)
}
