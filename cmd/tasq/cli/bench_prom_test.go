package cli_test

import (
	"strings"
	"testing"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testpg"
)

// bench --prom runs with the Prometheus metrics on and still works every job.
func TestBenchWithPrometheusMetrics(t *testing.T) {
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "--mode", "burn-down", "-n", "300", "--batch", "100",
		"--concurrency", "20", "--prom", "--json")
	if r.err != nil {
		t.Fatalf("bench --prom: %v\n%s", r.err, r.errOut)
	}
	if !strings.Contains(r.out, `"mode":"burn-down","jobs":300,`) {
		t.Errorf("bench --prom output lacks a burn-down of 300 jobs:\n%s", r.out)
	}
}
