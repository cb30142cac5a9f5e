package cli_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testpg"
)

// TestDemo runs `tasq demo` against an empty test database: it must migrate,
// dispatch, run every job to its intended end and print the counts from SQL.
func TestDemo(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewEmptyDatabase(t)
	began := time.Now()
	r := run(ctx, cli.Options{}, "demo", "--database-url", dsn, "--deadline", "25s")
	if r.err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.out, r.errOut)
	}
	t.Logf("demo took %v", time.Since(began))
	if testing.Verbose() {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.out, r.errOut)
	}

	for _, want := range []string{
		fmt.Sprintf("schema version %d", shippedVersion(t, "postgres")),
		"Task ID: ",
		"(20 jobs)",
		"SELECT count(*) FROM tasq_jobs WHERE id = ",
		cli.DemoCountsSQL + ";",
		"26 of 27 jobs completed; the invalid payment failed, as it should",
		"Payment failed for user 7: invalid payment amount: -$5.00",
		"Generating report 1",
		"(attempt 3 of 11)",
		"tasq jobs list --state failed",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.out)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s+queue\s+\|\s+state\s+\|\s+count\s*$`),
		regexp.MustCompile(`(?m)^\s+emails\s+\|\s+completed\s+\|\s+23\s*$`),
		regexp.MustCompile(`(?m)^\s+payments\s+\|\s+completed\s+\|\s+2\s*$`),
		regexp.MustCompile(`(?m)^\s+payments\s+\|\s+failed\s+\|\s+1\s*$`),
		regexp.MustCompile(`(?m)^\s+reports\s+\|\s+completed\s+\|\s+1\s*$`),
		regexp.MustCompile(`\(4 rows\)`),
	} {
		if !want.MatchString(r.out) {
			t.Errorf("demo's final table does not match %v:\n%s", want, r.out)
		}
	}
	// Progress lines on stderr (not a terminal: plain lines), and the retries in the logs.
	if !strings.Contains(r.errOut, "26 completed, 0 retrying, 1 failed, 0 running, 0 scheduled, 0 queued") {
		t.Errorf("stderr lacks the final progress line:\n%s", r.errOut)
	}
	if strings.Contains(r.errOut, "\r") {
		t.Errorf("stderr is not a terminal, yet the progress line was redrawn with \\r")
	}

	// The database agrees, and the order committed with its payment job.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var orders, paid int
	err = conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE j.state = 'completed')
FROM tasq_demo_orders o JOIN tasq_jobs j ON j.id = o.payment_job`).Scan(&orders, &paid)
	if err != nil || orders != 1 || paid != 1 {
		t.Errorf("orders with a completed payment job: %d of %d (%v); want 1 of 1", paid, orders, err)
	}
	// The flaky payment took three attempts and kept both errors.
	var attempts, errs int
	err = conn.QueryRow(ctx, `SELECT attempt, jsonb_array_length(errors) FROM tasq_jobs
WHERE kind = 'ProcessPayment' AND payload->>'user_id' = '123' AND state = 'completed'`).Scan(&attempts, &errs)
	if err != nil || attempts != 3 || errs != 2 {
		t.Errorf("flaky payment: attempt %d with %d errors (%v); want 3 attempts, 2 errors", attempts, errs, err)
	}

	// A second run on the same database says the table had jobs, and still ends as intended.
	r = run(ctx, cli.Options{}, "demo", "--database-url", dsn, "--deadline", "25s")
	if r.err != nil {
		t.Fatalf("second demo: %v\n%s", r.err, r.errOut)
	}
	if !strings.Contains(r.out, "tasq_jobs already holds 27 jobs") ||
		!regexp.MustCompile(`(?m)^\s+emails\s+\|\s+completed\s+\|\s+46\s*$`).MatchString(r.out) {
		t.Errorf("second demo output:\n%s", r.out)
	}
}

// TestDemoDeadline: when the jobs do not finish in time the demo says so and
// fails. The delayed email runs after 3s, so a 1s deadline cannot be met.
func TestDemoDeadline(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewDatabase(t)
	r := run(ctx, cli.Options{}, "demo", "--database-url", dsn, "--deadline", "1s")
	if r.err == nil || !strings.Contains(r.err.Error(), "did not all finish within 1s") {
		t.Fatalf("demo --deadline 1s: %v; want a deadline error\n%s", r.err, r.out)
	}
}
