package cli_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testpg"
)

// benchResults parses the RESULT lines of a bench run.
func benchResults(t *testing.T, out string) []map[string]any {
	t.Helper()
	var res []map[string]any
	for _, line := range strings.Split(out, "\n") {
		if js, ok := strings.CutPrefix(line, "RESULT "); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(js), &m); err != nil {
				t.Fatalf("RESULT line %q: %v", js, err)
			}
			res = append(res, m)
		}
	}
	return res
}

// used-table runs its three burn-downs and the purge between them on a table
// it never truncates after the first reset; its numbers are not checked.
func TestBenchUsedTable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "--mode", "used-table", "-n", "300", "--batch", "100",
		"--finished", "2500", "--purge-batch", "400", "--concurrency", "20", "--json")
	if r.err != nil {
		t.Fatalf("bench: %v\n%s", r.err, r.errOut)
	}
	phases := map[string]map[string]any{}
	for _, m := range benchResults(t, r.out) {
		if m["mode"] == "used-table" {
			phases[m["phase"].(string)] = m
		}
	}
	for _, p := range []string{"empty", "finished", "purged"} {
		m := phases[p]
		if m == nil || m["jobs"] != float64(300) || m["jobs_per_sec"].(float64) <= 0 || m["table"] == nil {
			t.Errorf("phase %s: result %v", p, m)
		}
	}
	if m := phases["finished"]; m != nil && (m["finished_rows"] != float64(2500) || m["ratio_to_empty"].(float64) <= 0) {
		t.Errorf("finished phase: %v", m)
	}
	if m := phases["purged"]; m != nil && (m["finished_rows"] != float64(2500) || m["purge_rows_per_sec"].(float64) <= 0) {
		t.Errorf("purged phase: %v", m)
	}
	// Live rows after (b): the 2500 finished ones and two burn-downs' jobs
	// (statistics may lag, so only a lower bound).
	if m := phases["finished"]; m != nil {
		if live := m["table"].(map[string]any)["n_live_tup"].(float64); live < 2500 {
			t.Errorf("n_live_tup after (b) = %v, want at least the 2500 finished rows", live)
		}
	}
	for _, want := range []string{"tasq used-table: empty", "target >= 0.90", "purged 2500 rows", "tasq_jobs after the purge"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
}

// notify measures dispatch with and without NOTIFY at each concurrency.
func TestBenchNotify(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "--mode", "notify", "--dispatchers", "1,3",
		"--notify-duration", "300ms", "--json")
	if r.err != nil {
		t.Fatalf("bench: %v\n%s", r.err, r.errOut)
	}
	seen := map[string]bool{}
	for _, m := range benchResults(t, r.out) {
		if m["mode"] != "notify" {
			continue
		}
		key := fmt.Sprintf("%v/%v", m["variant"], m["dispatchers"])
		seen[key] = true
		if m["jobs_per_sec"].(float64) <= 0 || m["p50_ms"].(float64) <= 0 || m["p99_ms"].(float64) < m["p50_ms"].(float64) {
			t.Errorf("result %v", m)
		}
	}
	for _, want := range []string{"notify/1", "without-notify/1", "notify/3", "without-notify/3"} {
		if !seen[want] {
			t.Errorf("no RESULT for %s (saw %v)", want, seen)
		}
	}
	// The baseline (WithoutWakeUps) sends no notification; the adapter does.
	var quiet, loud int
	for _, line := range strings.Split(r.out, "\n") {
		if strings.Contains(line, "without wake-ups") {
			quiet++
			if !strings.Contains(line, "heard 0 notifications") {
				t.Errorf("the baseline was heard: %s", line)
			}
		}
		if strings.Contains(line, "with wake-ups (") {
			loud++
			if strings.Contains(line, "heard 0 notifications") {
				t.Errorf("the adapter's wake-ups were not heard: %s", line)
			}
		}
	}
	if quiet == 0 || loud == 0 {
		t.Errorf("output lacks the two variants' lines:\n%s", r.out)
	}
}

func TestBenchRejectsBadNewFlags(t *testing.T) {
	ctx := testContext(t)
	for _, args := range [][]string{
		{"--finished", "0"}, {"--purge-batch", "0"}, {"--notify-duration", "0s"}, {"--dispatchers", "0"},
		{"--finished-payload", "-1"}, {"--wait-sample", "-1s"},
	} {
		r := run(ctx, cli.Options{}, append([]string{"bench", "--database-url", "postgres://127.0.0.1:1/x"}, args...)...)
		if r.err == nil {
			t.Errorf("bench %v was accepted", args)
		} else if strings.Contains(r.err.Error(), "127.0.0.1:1") {
			t.Errorf("bench %v: flags should be checked before connecting: %v", args, r.err)
		}
	}
}

// --unique stores every job with a unique key (none is skipped as a
// duplicate, continuous included: its payloads never repeat), and
// --middleware runs every attempt through the no-op middleware; both runs
// work every job they dispatch.
func TestBenchUniqueAndMiddleware(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "bench", "--database-url", dsn, "--mode", "after-burn-down", "--keep-table", "-n", "400", "--batch", "100",
		"--duration", "1s", "--concurrency", "20", "--unique", "--middleware", "--inserters", "3", "--json")
	if r.err != nil {
		t.Fatalf("bench: %v\n%s", r.err, r.errOut)
	}
	var continuous int64
	for _, m := range benchResults(t, r.out) {
		if m["phase"] == "after-burn-down" {
			continuous = int64(m["jobs"].(float64))
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var keyed, total, unfinished int64
	if err := conn.QueryRow(ctx, `SELECT count(unique_key), count(*), count(*) FILTER (WHERE state <> 'completed') FROM tasq_jobs`).
		Scan(&keyed, &total, &unfinished); err != nil {
		t.Fatal(err)
	}
	if keyed != total || total < 400+continuous {
		t.Errorf("%d jobs, %d with a unique key; want every job keyed and at least the burn-down's 400 + continuous's %d", total, keyed, continuous)
	}
	if total-unfinished < 400+continuous {
		t.Errorf("%d completed; want at least %d", total-unfinished, 400+continuous)
	}
}
