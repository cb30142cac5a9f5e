package cli_test

import (
	"strings"
	"testing"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testpg"
)

// soak works its jobs with retention on, prints sample lines and a summary
// with a RESULT line (without --json); its numbers are not checked.
func TestBenchSoak(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "--mode", "soak", "--soak-jobs", "20000",
		"--soak-keep", "1s", "--soak-sample", "500ms", "--concurrency", "200")
	if r.err != nil {
		t.Fatalf("bench: %v\n%s", r.err, r.errOut)
	}
	res := benchResults(t, r.out)
	if len(res) != 1 {
		t.Fatalf("want one RESULT line:\n%s", r.out)
	}
	m := res[0]
	if m["mode"] != "soak" || m["jobs"] != float64(20000) || m["jobs_per_sec"].(float64) <= 0 || m["keep_completed_s"] != float64(1) {
		t.Errorf("result %v", m)
	}
	final, _ := m["final"].(map[string]any)
	if final == nil || final["table_bytes"].(float64) <= 0 || final["indexes_bytes"].(float64) <= 0 {
		t.Errorf("final sample %v", final)
	}
	for _, want := range []string{"/20000 done", "tasq_jobs live", "autovacuum", "purged", "first half", "second half", "tasq soak: 20000 jobs in"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
}

func TestBenchSoakFlags(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	for _, args := range [][]string{{"--soak-jobs", "0"}, {"--soak-keep", "0s"}, {"--soak-sample", "-1s"}} {
		r := run(ctx, cli.Options{}, append([]string{"bench", "--mode", "soak"}, args...)...)
		if r.err == nil || !strings.Contains(r.err.Error(), "soak") {
			t.Errorf("%v: err %v, want a --soak-* error", args, r.err)
		}
	}
}
