// Command compare runs `tasq bench` and the River peer benchmark
// (bench/peers/river, a module of its own) back to back against the same
// fresh PostgreSQL, and prints the ratios. `make bench-compare` runs it.
//
// Continuous is measured both ways, for both systems, and labelled: on a
// fresh table (truncated and vacuumed first), and right after a burn-down of
// -n jobs on the same table, with no TRUNCATE and no VACUUM between (the
// after-burn-down mode of each), as a production table would be.
//
// Without TASQ_DATABASE_URL it starts a throwaway PostgreSQL with the default
// configuration (synchronous commits) from the local binaries.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tasqhq/tasq/internal/localpg"

	"github.com/tasqhq/tasq/bench/internal/peerrun"
)

// result is a RESULT line of either benchmark.
type result = peerrun.Result

func main() {
	n := flag.Int("n", 200000, "burn-down job count")
	dur := flag.Duration("duration", 20*time.Second, "continuous run length")
	latFor := flag.Duration("latency-duration", 10*time.Second, "latency run length")
	rate := flag.Int("rate", 500, "latency: jobs per second")
	runs := flag.Int("runs", 1, "runs per system and mode, interleaved; the table shows the best and the range")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n, *dur, *latFor, *rate, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench-compare:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, dur, latFor time.Duration, rate, runs int) (err error) {
	root, err := peerrun.RepoRoot("river")
	if err != nil {
		return err
	}
	url := os.Getenv("TASQ_DATABASE_URL")
	if url == "" {
		fmt.Fprintln(os.Stderr, "starting a throwaway PostgreSQL (default configuration)")
		srv, err := localpg.Start(ctx, localpg.Options{Install: true})
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, srv.Stop()) }()
		if url, err = srv.CreateDatabase(ctx, "bench_compare", ""); err != nil {
			return err
		}
	}
	// Build both first, so compilation is not measured and does not compete.
	tasqBin := filepath.Join(os.TempDir(), fmt.Sprintf("tasq-bench-%d", os.Getpid()))
	riverBin := tasqBin + "-river"
	defer os.Remove(tasqBin)
	defer os.Remove(riverBin)
	if err := peerrun.Command(ctx, root, nil, "go", "build", "-o", tasqBin, "./cmd/tasq").Run(); err != nil {
		return fmt.Errorf("build tasq: %w", err)
	}
	if err := peerrun.Command(ctx, filepath.Join(root, "bench/peers/river"), nil, "go", "build", "-o", riverBin, ".").Run(); err != nil {
		return fmt.Errorf("build the River peer: %w", err)
	}
	// The URL carries the throwaway server's password: it reaches the
	// children through their environment, never their command lines (which
	// every local user can read with ps).
	if err := os.Setenv("TASQ_DATABASE_URL", url); err != nil {
		return err
	}
	if err := peerrun.Command(ctx, root, nil, tasqBin, "migrate", "up").Run(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	type mode struct {
		name       string
		tasq, peer []string
	}
	modes := []mode{
		{"burn-down", []string{"-n", fmt.Sprint(n)}, []string{"-n", fmt.Sprint(n)}},
		{"continuous", []string{"--duration", dur.String()}, []string{"--duration", dur.String()}},
		// Burn-down, then continuous at once on the same table: the RESULT
		// line each prints last is the continuous one.
		{"after-burn-down", []string{"-n", fmt.Sprint(n), "--duration", dur.String()}, []string{"-n", fmt.Sprint(n), "--duration", dur.String()}},
		{"latency", []string{"--latency-duration", latFor.String(), "--rate", fmt.Sprint(rate)}, []string{"--duration", latFor.String(), "--rate", fmt.Sprint(rate)}},
	}
	best := map[string]map[string]result{"tasq": {}, "river": {}}
	all := map[string]map[string][]result{"tasq": {}, "river": {}}
	for _, m := range modes {
		for range runs {
			for _, sys := range []string{"tasq", "river"} {
				var args []string
				var bin string
				if sys == "tasq" {
					bin, args = tasqBin, append([]string{"bench", "--mode", m.name, "--json"}, m.tasq...)
				} else {
					bin, args = riverBin, append([]string{"--mode", m.name, "--json"}, m.peer...)
				}
				fmt.Fprintf(os.Stderr, "\n== %s %s\n", sys, m.name)
				r, err := peerrun.RunOne(ctx, root, nil, bin, args)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sys, m.name, err)
				}
				if m.name == "after-burn-down" && r.Phase != "after-burn-down" {
					return fmt.Errorf("%s %s: the last RESULT line is not the continuous run after the burn-down", sys, m.name)
				}
				all[sys][m.name] = append(all[sys][m.name], r)
				if old, ok := best[sys][m.name]; !ok || better(r, old) {
					best[sys][m.name] = r
				}
			}
		}
	}
	printTable(best, all, rate)
	return nil
}

func better(a, b result) bool {
	if a.Mode == "latency" {
		return a.P50 < b.P50
	}
	return a.JobsPerSec > b.JobsPerSec
}

func printTable(best map[string]map[string]result, all map[string]map[string][]result, rate int) {
	t, r := best["tasq"], best["river"]
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	// rng is the range of the jobs/s of every run, when there was more than one.
	rng := func(sys, mode string) string {
		rs := all[sys][mode]
		if len(rs) < 2 {
			return ""
		}
		lo, hi := rs[0].JobsPerSec, rs[0].JobsPerSec
		for _, x := range rs[1:] {
			lo, hi = min(lo, x.JobsPerSec), max(hi, x.JobsPerSec)
		}
		return fmt.Sprintf(" (%.0f–%.0f)", lo, hi)
	}
	row := func(label, mode string) {
		fmt.Printf("| %s | %.0f%s | %.0f%s | %s |\n", label, t[mode].JobsPerSec, rng("tasq", mode), r[mode].JobsPerSec, rng("river", mode),
			ratio(t[mode].JobsPerSec, r[mode].JobsPerSec))
	}
	fmt.Println()
	fmt.Println("| measurement | TasQ | River | TasQ / River |")
	fmt.Println("|---|---|---|---|")
	row("burn-down, jobs/s", "burn-down")
	row("continuous, fresh table, jobs/s", "continuous")
	row("continuous after a burn-down, same table, no vacuum, jobs/s", "after-burn-down")
	fmt.Printf("| batch insert, jobs/s | %.0f | %.0f | %s |\n", t["burn-down"].InsertPerSec, r["burn-down"].InsertPerSec, ratio(t["burn-down"].InsertPerSec, r["burn-down"].InsertPerSec))
	lt, lr := t["latency"], r["latency"]
	fmt.Printf("| pick-up latency at %d/s, p50 / p95 / p99 ms | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %s (p50, River / TasQ) |\n",
		rate, lt.P50, lt.P95, lt.P99, lr.P50, lr.P95, lr.P99, ratio(lr.P50, lt.P50))
	if len(all["tasq"]["continuous"]) > 1 {
		fmt.Println("\nThe best run is shown; the range of all runs is in brackets.")
	}
	fmt.Printf("\ncontinuous after a burn-down / on a fresh table: TasQ %s, River %s\n",
		ratio(t["after-burn-down"].JobsPerSec, t["continuous"].JobsPerSec), ratio(r["after-burn-down"].JobsPerSec, r["continuous"].JobsPerSec))
}
