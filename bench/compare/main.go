// Command compare runs `tasq bench` and the River peer benchmark
// (bench/peers/river, a module of its own) back to back against the same
// fresh PostgreSQL, and prints a markdown table of the ratios (issue 13's
// targets: every workload at least 2× River, pick-up latency at or below
// River's). `make bench-compare` runs it.
//
// The workloads (--modes, a comma list; all by default):
//
//   - burn-down: insert -n jobs in batches (the insert rate is a row of its
//     own), then work them all.
//   - continuous: keep a backlog for --duration on a fresh table (truncated
//     and vacuumed first).
//   - after-burn-down: continuous right after a burn-down of -n jobs on the
//     same table, with no TRUNCATE and no VACUUM between, as a production
//     (used) table would be.
//   - latency: single-job dispatches at each rate of --rates (default
//     500,5000) for --latency-duration, from --dispatchers goroutines in
//     each system; p50, p95 and p99 of dispatch-to-start, and the dispatch
//     rate each achieved (a rate short of the offered one is flagged).
//   - scale-out: a burn-down of -n jobs worked by each count of --processes
//     (default 1,2,4; empty skips it) worker processes.
//   - yardstick: TasQ only; the bare claim + complete SQL over -n jobs, the
//     adapter's statements in the same loop, and TasQ's burn-down as a
//     fraction of the bare SQL; printed below the table.
//
// Each measurement is run --runs times, the two systems interleaved (TasQ,
// River, TasQ, River, ...); the table shows the median of the runs and, over
// more than one, the range (min–max) of every cell; the ratios are those of
// the medians.
//
// Without TASQ_DATABASE_URL it starts a throwaway PostgreSQL with the default
// configuration (synchronous commits) from the local binaries. The database
// URL reaches the benchmarks through their environment, never their command
// lines.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tasqhq/tasq/internal/localpg"

	"github.com/tasqhq/tasq/bench/internal/peerrun"
)

// result is a RESULT line of either benchmark.
type result = peerrun.Result

// allModes are the workloads of --modes, in the order they run.
var allModes = []string{"burn-down", "continuous", "after-burn-down", "latency", "scale-out", "yardstick"}

// options are the parsed flags.
type options struct {
	n           int
	dur, latFor time.Duration
	rates       []int
	dispatchers int
	processes   []int
	runs        int
	modes       []string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 200000, "burn-down, after-burn-down, scale-out and yardstick: job count")
	flag.DurationVar(&o.dur, "duration", 20*time.Second, "continuous run length")
	flag.DurationVar(&o.latFor, "latency-duration", 10*time.Second, "latency run length, per rate")
	rate := flag.Int("rate", 500, "latency: one rate in jobs per second (--rates overrides it)")
	rates := flag.String("rates", "500,5000", "latency: offered rates in jobs per second, comma separated, one measurement each")
	flag.IntVar(&o.dispatchers, "dispatchers", 4, "latency: dispatches in flight at once in each system (tasq --latency-dispatchers, River --dispatchers)")
	processes := flag.String("processes", "1,2,4", "scale-out: worker process counts, comma separated (empty: skip scale-out)")
	flag.IntVar(&o.runs, "runs", 1, "runs per system and measurement, interleaved; the table shows the median and the range")
	modes := flag.String("modes", strings.Join(allModes, ","), "workloads to run, comma separated: "+strings.Join(allModes, ", "))
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["rate"] && !set["rates"] {
		*rates = strconv.Itoa(*rate)
	}
	var err error
	if o.rates, err = parseInts("--rates", *rates, 1, 100000); err == nil {
		if o.processes, err = parseInts("--processes", *processes, 1, 64); err == nil {
			o.modes, err = parseModes(*modes)
		}
	}
	switch {
	case err != nil:
	case o.n <= 0:
		err = fmt.Errorf("-n %d: must be positive", o.n)
	case o.runs <= 0:
		err = fmt.Errorf("--runs %d: must be positive", o.runs)
	case o.dispatchers <= 0:
		err = fmt.Errorf("--dispatchers %d: must be positive", o.dispatchers)
	case o.dur <= 0:
		err = errors.New("--duration must be positive")
	case o.latFor <= time.Second && slices.Contains(o.modes, "latency"):
		err = errors.New("--latency-duration must be longer than the 1s warm-up")
	case len(o.rates) == 0 && slices.Contains(o.modes, "latency"):
		err = errors.New("--rates: give at least one rate for latency, e.g. 500,5000")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-compare:", err)
		os.Exit(2)
	}
	if len(o.processes) == 0 {
		o.modes = slices.DeleteFunc(o.modes, func(m string) bool { return m == "scale-out" })
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-compare:", err)
		os.Exit(1)
	}
}

// parseInts parses a comma list of integers from lo to hi; empty is none.
func parseInts(name, s string, lo, hi int) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < lo || v > hi {
			return nil, fmt.Errorf("%s %q: use integers from %d to %d, comma separated", name, s, lo, hi)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// parseModes parses --modes, keeping allModes' order.
func parseModes(s string) ([]string, error) {
	want := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if f == "all" {
			return slices.Clone(allModes), nil
		}
		if !slices.Contains(allModes, f) {
			return nil, fmt.Errorf("--modes: unknown workload %q (use %s)", f, strings.Join(allModes, ", "))
		}
		want[f] = true
	}
	if len(want) == 0 {
		return nil, errors.New("--modes: give at least one workload")
	}
	var out []string
	for _, m := range allModes {
		if want[m] {
			out = append(out, m)
		}
	}
	return out, nil
}

// step is one measurement: a `tasq bench` invocation and, unless peer is
// nil, the River peer's, and how their RESULT lines are filed.
type step struct {
	title      string
	tasq, peer []string // arguments after the mode's own
	// pick files an invocation's RESULT lines under their keys in the table.
	pick func(rs []result) (map[string]result, error)
}

// last files the last RESULT line under key.
func last(key string) func([]result) (map[string]result, error) {
	return func(rs []result) (map[string]result, error) {
		return map[string]result{key: rs[len(rs)-1]}, nil
	}
}

// latencyKey and scaleKey are the table keys of a latency rate and of a
// scale-out process count.
func latencyKey(rate int) string { return "latency@" + strconv.Itoa(rate) }
func scaleKey(p int) string      { return "scale-out@" + strconv.Itoa(p) }

// steps lists the measurements of o, in the order they run.
func steps(o options) []step {
	n := strconv.Itoa(o.n)
	var out []step
	for _, m := range o.modes {
		switch m {
		case "burn-down":
			out = append(out, step{m, []string{"--mode", m, "-n", n}, []string{"--mode", m, "-n", n}, last(m)})
		case "continuous":
			d := o.dur.String()
			out = append(out, step{m, []string{"--mode", m, "--duration", d}, []string{"--mode", m, "--duration", d}, last(m)})
		case "after-burn-down":
			// Burn-down, then continuous at once on the same table: the
			// RESULT line each prints last is the continuous one.
			d := o.dur.String()
			out = append(out, step{m, []string{"--mode", m, "-n", n, "--duration", d}, []string{"--mode", m, "-n", n, "--duration", d},
				func(rs []result) (map[string]result, error) {
					r := rs[len(rs)-1]
					if r.Phase != "after-burn-down" {
						return nil, errors.New("the last RESULT line is not the continuous run after the burn-down")
					}
					return map[string]result{m: r}, nil
				}})
		case "latency":
			d, disp := o.latFor.String(), strconv.Itoa(o.dispatchers)
			for _, rate := range o.rates {
				r := strconv.Itoa(rate)
				out = append(out, step{fmt.Sprintf("latency at %d/s", rate),
					[]string{"--mode", m, "--latency-duration", d, "--rate", r, "--latency-dispatchers", disp},
					[]string{"--mode", m, "--duration", d, "--rate", r, "--dispatchers", disp},
					last(latencyKey(rate))})
			}
		case "scale-out":
			for _, p := range o.processes {
				args := []string{"--mode", m, "--processes", strconv.Itoa(p), "-n", n}
				out = append(out, step{fmt.Sprintf("scale-out, %d process(es)", p), args, args,
					func(rs []result) (map[string]result, error) {
						for _, r := range rs {
							if r.Mode == "scale-out" && r.Processes == p {
								return map[string]result{scaleKey(p): r}, nil
							}
						}
						return nil, fmt.Errorf("no scale-out RESULT line for %d processes", p)
					}})
			}
		case "yardstick":
			out = append(out, step{m, []string{"--mode", m, "-n", n}, nil,
				func(rs []result) (map[string]result, error) {
					got := map[string]result{}
					for _, r := range rs {
						switch r.Mode {
						case "yardstick", "yardstick-adapter-sql", "yardstick-burn-down":
							got[r.Mode] = r
						}
					}
					if _, ok := got["yardstick"]; !ok {
						return nil, errors.New("no yardstick RESULT line")
					}
					if _, ok := got["yardstick-burn-down"]; !ok {
						return nil, errors.New("no yardstick-burn-down RESULT line")
					}
					return got, nil
				}})
		}
	}
	return out
}

// results holds every run's RESULT lines: system, then table key.
type results map[string]map[string][]result

func run(ctx context.Context, o options) (err error) {
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
	all := results{"tasq": {}, "river": {}}
	for _, s := range steps(o) {
		for i := range o.runs {
			for _, sys := range []string{"tasq", "river"} {
				var bin string
				var args []string
				switch {
				case sys == "tasq":
					bin, args = tasqBin, append([]string{"bench", "--json"}, s.tasq...)
				case s.peer == nil:
					continue
				default:
					bin, args = riverBin, append([]string{"--json"}, s.peer...)
				}
				fmt.Fprintf(os.Stderr, "\n== %s %s (run %d of %d)\n", sys, s.title, i+1, o.runs)
				rs, err := peerrun.RunAll(ctx, root, nil, bin, args)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sys, s.title, err)
				}
				got, err := s.pick(rs)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sys, s.title, err)
				}
				for k, r := range got {
					all[sys][k] = append(all[sys][k], r)
				}
			}
		}
	}
	printTable(os.Stdout, all, o)
	return nil
}

// Measurements of a RESULT line.
func jobsPerSec(r result) float64   { return r.JobsPerSec }
func insertPerSec(r result) float64 { return r.InsertPerSec }
func dispatched(r result) float64   { return r.DispatchedPerSec }
func p50(r result) float64          { return r.P50 }
func p95(r result) float64          { return r.P95 }
func p99(r result) float64          { return r.P99 }
func toYardstick(r result) float64  { return r.Ratio }

// ratio is a / b of the medians, "-" when either is missing.
func ratio(a, b peerrun.Stat) string {
	if a.N == 0 || b.N == 0 || b.Med == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a.Med/b.Med)
}

// reached tells whether the achieved dispatch rate s came within 5% of the
// offered rate in every run ("" when not measured).
func reached(s peerrun.Stat, rate int) string {
	switch {
	case s.N == 0:
		return ""
	case s.Lo >= 0.95*float64(rate):
		return "yes"
	case s.Med >= 0.95*float64(rate):
		return "not in every run"
	default:
		return "NO"
	}
}

// printTable writes the markdown table of all, and the lines below it.
func printTable(w io.Writer, all results, o options) {
	t, r := all["tasq"], all["river"]
	fmt.Fprintf(w, "\n%d run(s) each, interleaved; median, and (min–max) over more than one run; ratios of the medians\n\n", o.runs)
	fmt.Fprintln(w, "| measurement | TasQ | River | TasQ / River |")
	fmt.Fprintln(w, "|---|---|---|---|")
	row := func(label, key string, f func(result) float64, prec int, lowerIsBetter bool) {
		ts, rs := peerrun.Summarize(t[key], f), peerrun.Summarize(r[key], f)
		if ts.N == 0 && rs.N == 0 {
			return
		}
		q := ratio(ts, rs)
		if lowerIsBetter {
			q = ratio(rs, ts) + " (River / TasQ)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", label, ts.Format(prec), rs.Format(prec), q)
	}
	row("burn-down, jobs/s", "burn-down", jobsPerSec, 0, false)
	row("continuous, fresh table, jobs/s", "continuous", jobsPerSec, 0, false)
	row("continuous after a burn-down, same table, no vacuum, jobs/s", "after-burn-down", jobsPerSec, 0, false)
	row("batch insert (burn-down), jobs/s", "burn-down", insertPerSec, 0, false)
	for _, rate := range o.rates {
		key := latencyKey(rate)
		if len(t[key]) == 0 && len(r[key]) == 0 {
			continue
		}
		// The achieved rates: a rate that a system did not reach makes its
		// percentiles those of a lower load.
		ts, rs := peerrun.Summarize(t[key], dispatched), peerrun.Summarize(r[key], dispatched)
		note := fmt.Sprintf("reached: TasQ %s, River %s", orDash(reached(ts, rate)), orDash(reached(rs, rate)))
		fmt.Fprintf(w, "| latency at %d/s offered (%d dispatchers), achieved jobs/s | %s | %s | %s |\n",
			rate, o.dispatchers, ts.Format(0), rs.Format(0), note)
		for _, p := range []struct {
			name string
			f    func(result) float64
		}{{"p50", p50}, {"p95", p95}, {"p99", p99}} {
			row(fmt.Sprintf("pick-up latency at %d/s, %s ms", rate, p.name), key, p.f, 2, true)
		}
	}
	for _, p := range o.processes {
		row(fmt.Sprintf("scale-out, %d process(es), jobs/s", p), scaleKey(p), jobsPerSec, 0, false)
	}
	if len(o.processes) > 1 {
		if line := scaling(all, o.processes); line != "" {
			fmt.Fprintln(w, "\n"+line)
		}
	}
	if ta, tc := peerrun.Summarize(t["after-burn-down"], jobsPerSec), peerrun.Summarize(t["continuous"], jobsPerSec); ta.N > 0 && tc.N > 0 {
		fmt.Fprintf(w, "\ncontinuous after a burn-down / on a fresh table: TasQ %s, River %s\n", ratio(ta, tc),
			ratio(peerrun.Summarize(r["after-burn-down"], jobsPerSec), peerrun.Summarize(r["continuous"], jobsPerSec)))
	}
	if y := t["yardstick"]; len(y) > 0 {
		ys := peerrun.Summarize(y, jobsPerSec)
		line := fmt.Sprintf("\nyardstick (TasQ only, -n %d): bare claim + complete SQL %s jobs/s", o.n, ys.Format(0))
		if a := t["yardstick-adapter-sql"]; len(a) > 0 {
			line += fmt.Sprintf("; adapter SQL %s jobs/s = %s of it", peerrun.Summarize(a, jobsPerSec).Format(0),
				peerrun.Summarize(a, toYardstick).Format(2))
		}
		b := t["yardstick-burn-down"]
		line += fmt.Sprintf("; TasQ burn-down %s jobs/s = %s of it (target ≥ 0.90)", peerrun.Summarize(b, jobsPerSec).Format(0),
			peerrun.Summarize(b, toYardstick).Format(2))
		fmt.Fprintln(w, line)
	}
}

// scaling is the line with each system's scale-out rates as multiples of its
// rate with the fewest processes ("" when not measured).
func scaling(all results, processes []int) string {
	var parts []string
	for _, sys := range []struct{ key, name string }{{"tasq", "TasQ"}, {"river", "River"}} {
		base := peerrun.Summarize(all[sys.key][scaleKey(processes[0])], jobsPerSec)
		if base.N == 0 {
			continue
		}
		var xs []string
		for _, p := range processes[1:] {
			xs = append(xs, fmt.Sprintf("%d: %s", p, ratio(peerrun.Summarize(all[sys.key][scaleKey(p)], jobsPerSec), base)))
		}
		parts = append(parts, sys.name+" "+strings.Join(xs, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("scale-out against %d process(es), medians: %s", processes[0], strings.Join(parts, "; "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
