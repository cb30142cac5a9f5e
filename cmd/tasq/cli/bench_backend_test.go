package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/queue"
)

// benchBystander is a job of another queue that bench must leave alone.
type benchBystander struct{}

func (benchBystander) Kind() string                             { return "bench_bystander" }
func (benchBystander) Config() queue.Config                     { return queue.Config{Queue: "not_the_bench"} }
func (benchBystander) Handle(context.Context) (struct{}, error) { return struct{}{}, nil }

// bench runs burn-down, continuous and latency on Redis and MySQL through
// the adapter seam: every job is worked (burn-down and latency check it
// themselves and fail otherwise), and the reset removes only the
// benchmark's own jobs. The numbers are not checked.
func TestBenchOnOtherBackends(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"redis", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			env := newBackendEnv(t, ctx, driver)
			other := env.dispatch(t, ctx, benchBystander{})
			r := env.run(ctx, cli.Options{}, "bench", "-n", "300", "--batch", "100", "--duration", "1s",
				"--latency-duration", "1500ms", "--rate", "40", "--concurrency", "20", "--json")
			if r.err != nil {
				t.Fatalf("bench on %s: %v\n%s", driver, r.err, r.errOut)
			}
			modes := map[string]map[string]any{}
			for _, m := range benchResults(t, r.out) {
				modes[m["mode"].(string)] = m
			}
			if bd := modes["burn-down"]; bd == nil || bd["jobs"] != float64(300) || bd["jobs_per_sec"].(float64) <= 0 || bd["insert_jobs_per_sec"].(float64) <= 0 {
				t.Errorf("burn-down result %v", bd)
			}
			if c := modes["continuous"]; c == nil || c["jobs"].(float64) <= 0 {
				t.Errorf("continuous result %v", c)
			}
			// latency fails unless every job it dispatched started.
			if l := modes["latency"]; l == nil || l["jobs"].(float64) <= 0 || l["p99_ms"].(float64) < l["p50_ms"].(float64) {
				t.Errorf("latency result %v", l)
			}
			for _, want := range []string{"tasq burn-down:  300 jobs", "tasq continuous:", "tasq latency:"} {
				if !strings.Contains(r.out, want) {
					t.Errorf("output lacks %q:\n%s", want, r.out)
				}
			}
			// The bystander is still there, still available; the benchmark's
			// jobs are gone.
			info, err := env.reader(t).GetJob(ctx, other)
			if err != nil || info.State != queue.StateAvailable {
				t.Errorf("the other queue's job after bench: %+v, %v", info, err)
			}
			st := env.stats(t, ctx)
			for k, n := range st {
				if strings.HasPrefix(k, "tasq_bench/") && n != 0 {
					t.Errorf("bench left %d jobs in %s", n, k)
				}
			}
		})
	}
}

// Modes other than burn-down, continuous and latency stay PostgreSQL only.
func TestBenchOtherModesNeedPostgres(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	env := newBackendEnv(t, ctx, "redis")
	r := env.run(ctx, cli.Options{}, "bench", "--mode", "notify")
	if r.err == nil || !strings.Contains(r.err.Error(), "PostgreSQL only") {
		t.Fatalf("bench --mode notify on redis: %v", r.err)
	}
}
