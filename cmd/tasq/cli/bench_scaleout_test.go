package cli_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testpg"
)

// init makes the test binary a scale-out worker child when the bench starts
// it as one (it re-executes os.Executable, which is this binary under go
// test): it runs the command line it was given and exits, before any test.
func init() {
	if os.Getenv("TASQ_BENCH_CHILD") != "1" {
		return
	}
	root := cli.NewRoot(cli.Options{})
	root.SetArgs(os.Args[1:])
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "scale-out child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// scale-out works every job with 1 and 2 worker processes and reports each.
func TestBenchScaleOut(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "--mode", "scale-out", "--processes", "1,2",
		"-n", "500", "--batch", "100", "--concurrency", "20", "--json")
	if r.err != nil {
		t.Fatalf("bench: %v\n%s", r.err, r.errOut)
	}
	seen := map[float64]bool{}
	for _, m := range benchResults(t, r.out) {
		if m["mode"] != "scale-out" {
			continue
		}
		seen[m["processes"].(float64)] = true
		if m["jobs"] != float64(500) || m["jobs_per_sec"].(float64) <= 0 || m["finished"] != float64(500) || m["claimed"] != float64(500) {
			t.Errorf("result %v", m)
		}
	}
	if !seen[1] || !seen[2] {
		t.Errorf("no RESULT for 1 and 2 processes: %v\n%s", seen, r.out)
	}
	for _, want := range []string{"tasq scale-out:  1 process(es)", "tasq scale-out:  2 process(es)", "claims ", "cpu: workers"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
}

// yardstick works -n jobs with bare SQL, -n with the adapter's statements
// in the same loop, then -n with the worker, and reports the ratios.
func TestBenchYardstick(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "--mode", "yardstick", "-n", "700", "--batch", "100",
		"--yardstick-batch", "64", "--concurrency", "20", "--json")
	if r.err != nil {
		t.Fatalf("bench: %v\n%s", r.err, r.errOut)
	}
	modes := map[string]map[string]any{}
	for _, m := range benchResults(t, r.out) {
		modes[m["mode"].(string)] = m
	}
	if m := modes["yardstick"]; m == nil || m["jobs"] != float64(700) || m["jobs_per_sec"].(float64) <= 0 || m["round_trips"] != float64(2*11) {
		t.Errorf("yardstick result %v", m)
	}
	if m := modes["yardstick-adapter-sql"]; m == nil || m["jobs"] != float64(700) || m["ratio_to_yardstick"].(float64) <= 0 {
		t.Errorf("adapter-statement yardstick result %v", m)
	}
	if m := modes["yardstick-burn-down"]; m == nil || m["jobs"] != float64(700) || m["ratio_to_yardstick"].(float64) <= 0 || m["finished"] != float64(700) {
		t.Errorf("burn-down result %v", m)
	}
	for _, want := range []string{"yardstick:  ", "adapter SQL: ", "of the yardstick (target >= 0.90)", "jobs/claim"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
}

func TestBenchRejectsBadScaleFlags(t *testing.T) {
	ctx := testContext(t)
	for _, args := range [][]string{{"--processes", "0"}, {"--yardstick-batch", "0"}} {
		r := run(ctx, cli.Options{}, append([]string{"bench", "--database-url", "postgres://127.0.0.1:1/x"}, args...)...)
		if r.err == nil {
			t.Errorf("bench %v was accepted", args)
		}
	}
}
