package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testpg"
)

// The benchmark runs every workload end to end and reports parseable results;
// its numbers are not checked (benchmarks are commands, not timed tests).
func TestBenchRunsEveryWorkload(t *testing.T) {
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "-n", "300", "--batch", "100",
		"--duration", "1s", "--latency-duration", "1500ms", "--rate", "40", "--concurrency", "20", "--json")
	if r.err != nil {
		t.Fatalf("bench: %v\n%s", r.err, r.errOut)
	}
	modes := map[string]map[string]any{}
	for _, line := range strings.Split(r.out, "\n") {
		if js, ok := strings.CutPrefix(line, "RESULT "); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(js), &m); err != nil {
				t.Fatalf("RESULT line %q: %v", js, err)
			}
			modes[m["mode"].(string)] = m
		}
	}
	if bd := modes["burn-down"]; bd == nil || bd["jobs"] != float64(300) || bd["jobs_per_sec"].(float64) <= 0 || bd["insert_jobs_per_sec"].(float64) <= 0 {
		t.Errorf("burn-down result %v", bd)
	}
	if c := modes["continuous"]; c == nil || c["jobs"].(float64) <= 0 {
		t.Errorf("continuous result %v", c)
	}
	if l := modes["latency"]; l == nil || l["p50_ms"].(float64) <= 0 || l["p99_ms"].(float64) < l["p50_ms"].(float64) {
		t.Errorf("latency result %v", l)
	}
	if !strings.Contains(r.errOut, "[tasq] burn-down: inserting 300 jobs") {
		t.Errorf("no progress output:\n%s", r.errOut)
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	ctx := testContext(t)
	for _, args := range [][]string{
		{"--mode", "sprint"}, {"-n", "0"}, {"--rate", "-1"}, {"--latency-dispatchers", "0"}, {"--inserters", "0"}, {"--concurrency", "0"}, {"--duration", "0s"}, {"--batch", "0"},
	} {
		r := run(ctx, cli.Options{}, append([]string{"bench", "--database-url", "postgres://127.0.0.1:1/x"}, args...)...)
		if r.err == nil {
			t.Errorf("bench %v was accepted", args)
		} else if strings.Contains(r.err.Error(), "127.0.0.1:1") {
			t.Errorf("bench %v: flags should be checked before connecting: %v", args, r.err)
		}
	}
}
