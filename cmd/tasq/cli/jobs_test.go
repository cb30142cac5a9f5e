package cli_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/queue"
)

// TestJobsAndStats runs a completed, a failed and a scheduled job through
// every jobs subcommand and stats.
func TestJobsAndStats(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	email := e.dispatch(t, ctx, &demo.SendEmail{To: "ann@example.com", Subject: "Hi"})
	payment := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 7, AmountCents: -500})

	// Run both through the worker command, which stops by itself after two jobs.
	var taskOut syncBuffer
	opts := cli.Options{Registry: demoRegistry(t), Logger: quietLogger()}
	r := run(demo.WithOutput(ctx, &taskOut), opts, "worker", "--database-url", e.dsn,
		"--queues", "emails,payments", "--max-tasks", "2", "--poll-interval", "100ms")
	if r.err != nil {
		t.Fatalf("worker --max-tasks 2: %v\n%s", r.err, r.errOut)
	}
	for _, want := range []string{"Sending email to ann@example.com: Hi", "Payment failed for user 7: invalid payment amount"} {
		if !strings.Contains(taskOut.String(), want) {
			t.Errorf("task output %q lacks %q", taskOut.String(), want)
		}
	}
	later := e.dispatch(t, ctx, &demo.GenerateReport{ReportID: 9}, queue.Delay(time.Hour))

	jobs := func(args ...string) result {
		t.Helper()
		r := run(ctx, cli.Options{}, append(append([]string{"jobs"}, args...), "--database-url", e.dsn)...)
		if r.err != nil {
			t.Fatalf("tasq jobs %s: %v", strings.Join(args, " "), r.err)
		}
		return r
	}
	lineOf := func(out string, id uuid.UUID) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, id.String()) {
				return l
			}
		}
		t.Fatalf("no line for job %s in:\n%s", id, out)
		return ""
	}

	// list: a table with every job, newest first.
	out := jobs("list").out
	if !strings.HasPrefix(out, "ID ") || !strings.Contains(strings.Split(out, "\n")[0], "LAST ERROR") {
		t.Errorf("list has no header:\n%s", out)
	}
	for id, want := range map[uuid.UUID]*regexp.Regexp{
		email:   regexp.MustCompile(`SendEmail\s+emails\s+completed\s+1/4\s`),
		payment: regexp.MustCompile(`ProcessPayment\s+payments\s+failed\s+1/11\s.*invalid payment amount`),
		later:   regexp.MustCompile(`GenerateReport\s+reports\s+scheduled\s+0/4\s`),
	} {
		if l := lineOf(out, id); !want.MatchString(l) {
			t.Errorf("list line %q does not match %v", l, want)
		}
	}
	if strings.Index(out, later.String()) > strings.Index(out, email.String()) {
		t.Errorf("list is not newest first:\n%s", out)
	}

	// Filters.
	out = jobs("list", "--state", "failed").out
	if !strings.Contains(out, payment.String()) || strings.Contains(out, email.String()) {
		t.Errorf("--state failed:\n%s", out)
	}
	out = jobs("list", "--queue", "emails", "--kind", "SendEmail", "--since", "1h").out
	if !strings.Contains(out, email.String()) || strings.Contains(out, payment.String()) || strings.Contains(out, later.String()) {
		t.Errorf("--queue emails --kind SendEmail:\n%s", out)
	}
	if out = jobs("list", "--limit", "1").out; strings.Count(out, "\n") != 2 || !strings.Contains(out, later.String()) {
		t.Errorf("--limit 1 should print the header and the newest job:\n%s", out)
	}
	if out = jobs("list", "--state", "cancelled").out; out != "no jobs match\n" {
		t.Errorf("--state cancelled printed %q", out)
	}

	// list --json: the columns by name.
	var list []map[string]any
	if err := json.Unmarshal([]byte(jobs("list", "--json").out), &list); err != nil || len(list) != 3 {
		t.Fatalf("list --json: %d jobs, %v", len(list), err)
	}
	if list[0]["id"] != later.String() || list[0]["state"] != "scheduled" || list[0]["payload"].(map[string]any)["report_id"] != 9.0 {
		t.Errorf("list --json first job = %v", list[0])
	}
	if out = jobs("list", "--json", "--state", "cancelled").out; strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json printed %q", out)
	}

	// show: every field, payload, result, error history.
	out = jobs("show", email.String()).out
	for _, want := range []string{"state:         completed", `"to": "ann@example.com"`, `"Email sent to ann@example.com"`, "errors: none", "attempt:       1 of 4"} {
		if !strings.Contains(out, want) {
			t.Errorf("show completed job lacks %q:\n%s", want, out)
		}
	}
	out = jobs("show", payment.String()).out
	for _, want := range []string{"state:         failed", `"amount_cents": -500`, "errors (1, oldest first):", "attempt 1 at ", "invalid payment amount: -$5.00"} {
		if !strings.Contains(out, want) {
			t.Errorf("show failed job lacks %q:\n%s", want, out)
		}
	}
	var shown struct {
		ID         string           `json:"id"`
		State      string           `json:"state"`
		MaxRetries int              `json:"max_retries"`
		TimeoutMS  int64            `json:"timeout_ms"`
		Errors     []queue.JobError `json:"errors"`
	}
	if err := json.Unmarshal([]byte(jobs("show", payment.String(), "--json").out), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.ID != payment.String() || shown.State != "failed" || shown.MaxRetries != 10 || shown.TimeoutMS != 60000 ||
		len(shown.Errors) != 1 || !strings.Contains(shown.Errors[0].Error, "invalid payment amount") {
		t.Errorf("show --json = %+v", shown)
	}

	// retry, cancel, delete.
	if out = jobs("retry", payment.String()).out; !strings.Contains(out, "retried") {
		t.Errorf("retry printed %q", out)
	}
	if j, _ := e.adapter.GetJob(ctx, payment); j.State != queue.StateAvailable || j.Attempt != 0 {
		t.Errorf("after retry the job is %s at attempt %d; want available at 0", j.State, j.Attempt)
	}
	r = run(ctx, cli.Options{}, "jobs", "retry", email.String(), "--database-url", e.dsn)
	if r.err == nil || !errors.Is(r.err, queue.ErrJobState) || !strings.Contains(r.err.Error(), "completed") {
		t.Errorf("retry of a completed job: %v; want a state error naming its state", r.err)
	}
	if out = jobs("cancel", later.String()).out; !strings.Contains(out, "cancelled") {
		t.Errorf("cancel printed %q", out)
	}
	if !strings.Contains(jobs("show", later.String()).out, "cancelled by operator") {
		t.Errorf("cancelled job has no error entry")
	}
	r = run(ctx, cli.Options{}, "jobs", "cancel", later.String(), "--database-url", e.dsn)
	if r.err == nil || !strings.Contains(r.err.Error(), "it is cancelled") {
		t.Errorf("second cancel: %v", r.err)
	}
	if out = jobs("delete", later.String()).out; !strings.Contains(out, "deleted") {
		t.Errorf("delete printed %q", out)
	}
	r = run(ctx, cli.Options{}, "jobs", "show", later.String(), "--database-url", e.dsn)
	if want := "job " + later.String() + " not found"; r.err == nil || !strings.Contains(r.err.Error(), want) {
		t.Errorf("show of a deleted job: %v; want %q", r.err, want)
	}

	// stats: per queue and state, with totals.
	r = run(ctx, cli.Options{}, "stats", "--database-url", e.dsn)
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^QUEUE\s+scheduled\s+available\s+running\s+completed\s+retryable\s+failed\s+cancelled\s+TOTAL$`),
		regexp.MustCompile(`(?m)^emails\s+0\s+0\s+0\s+1\s+0\s+0\s+0\s+1$`),
		regexp.MustCompile(`(?m)^payments\s+0\s+1\s+0\s+0\s+0\s+0\s+0\s+1$`),
		regexp.MustCompile(`(?m)^TOTAL\s+0\s+1\s+0\s+1\s+0\s+0\s+0\s+2$`),
	} {
		if !want.MatchString(r.out) {
			t.Errorf("stats does not match %v:\n%s", want, r.out)
		}
	}
	var stats []struct {
		Queue string `json:"queue"`
		State string `json:"state"`
		Count int64  `json:"count"`
	}
	r = run(ctx, cli.Options{}, "stats", "--json", "--database-url", e.dsn)
	if err := json.Unmarshal([]byte(r.out), &stats); err != nil || len(stats) != 2 ||
		stats[0].Queue != "emails" || stats[0].State != "completed" || stats[0].Count != 1 {
		t.Errorf("stats --json = %+v (%v)", stats, err)
	}
}

func TestStatsOnEmptyTable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	r := run(ctx, cli.Options{}, "stats", "--database-url", e.dsn)
	if r.err != nil || r.out != "no jobs yet\n" {
		t.Errorf("stats on an empty table: %q, %v", r.out, r.err)
	}
	r = run(ctx, cli.Options{}, "jobs", "list", "--database-url", e.dsn)
	if r.err != nil || r.out != "no jobs match\n" {
		t.Errorf("jobs list on an empty table: %q, %v", r.out, r.err)
	}
}

// hostile is what an attacker may get into a stored string: an OSC that
// retitles the terminal, BEL, and a CSI that clears the screen.
const hostile = "\x1b]0;pwned\x07\x1b[2J"

// TestJobsOutputEscapesControlCharacters: kinds, queues, payloads, results,
// worker IDs and error texts are printed with their control characters
// escaped, by every output of jobs list, jobs show and stats, so that a
// stored string cannot drive the operator's terminal. The JSON outputs stay
// lossless: decoded, they give the stored strings back.
func TestJobsOutputEscapesControlCharacters(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	var (
		id          = uuid.New()
		kind        = "Evil\x1b[31mKind"
		queueName   = "q\u009b2J"           // a C1 CSI, which ValidateQueueName lets through
		attemptedBy = "worker\x1b[2J\u202e" // and a right-to-left override
		firstErr    = "first line\nsecond \x1b[1A line\r"
		lastErr     = "gateway said: " + hostile
		payload     = `{"note": "\u001b]0;pwned\u0007", "c1": "` + "\u009b" + `31m", "del": "x` + "\x7f" + `"}`
		result      = `"done ` + "\u009b" + `2J"`
	)
	// A row as a careless task or a hand-written INSERT could leave it.
	_, err := e.adapter.Pool().Exec(ctx, `INSERT INTO tasq_jobs (id, kind, queue, state, payload, result, attempt,
		attempted_at, attempted_by, finished_at, errors)
		VALUES ($1, $2, $3, 'failed', $4::jsonb, $5::jsonb, 2, now(), $6, now(),
		        jsonb_build_array(jsonb_build_object('attempt', 1, 'at', now(), 'error', $7::text),
		                          jsonb_build_object('attempt', 2, 'at', now(), 'error', $8::text)))`,
		id, kind, queueName, payload, result, attemptedBy, firstErr, lastErr)
	if err != nil {
		t.Fatalf("insert the hostile row: %v", err)
	}

	outputs := map[string]string{}
	for _, args := range [][]string{
		{"jobs", "list"}, {"jobs", "list", "--json"}, {"jobs", "show", id.String()}, {"jobs", "show", id.String(), "--json"},
		{"stats"}, {"stats", "--json"},
	} {
		r := run(ctx, cli.Options{}, append(args, "--database-url", e.dsn)...)
		if r.err != nil {
			t.Fatalf("tasq %s: %v", strings.Join(args, " "), r.err)
		}
		name := strings.Join(args, " ")
		outputs[name] = r.out
		if i := strings.IndexFunc(r.out, func(c rune) bool {
			return (c < 0x20 && c != '\n') || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x202e
		}); i >= 0 {
			t.Errorf("tasq %s printed the control character %U at byte %d:\n%q", name, []rune(r.out[i:])[0], i, r.out)
		}
	}

	// The escapes are visible where the strings were.
	list := outputs["jobs list"]
	for _, want := range []string{`Evil\x1b[31mKind`, `q\u009b2J`, `gateway said: \x1b]0;pwned\x07\x1b[2J`} {
		if !strings.Contains(list, want) {
			t.Errorf("jobs list lacks %q:\n%s", want, list)
		}
	}
	show := outputs["jobs show "+id.String()]
	for _, want := range []string{
		`kind:          Evil\x1b[31mKind`,
		`queue:         q\u009b2J`,
		`attempted by:  worker\x1b[2J\u202e`,
		`"c1": "\u009b31m"`, `"del": "x\x7f"`, `"done \u009b2J"`,
		// The error display keeps newlines (indented under their entry),
		// and escapes everything else, carriage returns included.
		"attempt 1 at ", "first line\n    second \\x1b[1A line\\r\n",
		`attempt 2 at `, `gateway said: \x1b]0;pwned\x07\x1b[2J`,
	} {
		if !strings.Contains(show, want) {
			t.Errorf("jobs show lacks %q:\n%s", want, show)
		}
	}
	if stats := outputs["stats"]; !regexp.MustCompile(`(?m)^q\\u009b2J\s+0\s+0\s+0\s+0\s+0\s+1\s+0\s+1$`).MatchString(stats) {
		t.Errorf("stats has no escaped row for the queue:\n%s", stats)
	}

	// The JSON outputs decode to the stored strings.
	type jobOut struct {
		Kind        string           `json:"kind"`
		Queue       string           `json:"queue"`
		AttemptedBy string           `json:"attempted_by"`
		Payload     map[string]any   `json:"payload"`
		Result      string           `json:"result"`
		Errors      []queue.JobError `json:"errors"`
	}
	var listed []jobOut
	var shown jobOut
	var counted []struct {
		Queue string `json:"queue"`
	}
	if err := errors.Join(json.Unmarshal([]byte(outputs["jobs list --json"]), &listed),
		json.Unmarshal([]byte(outputs["jobs show "+id.String()+" --json"]), &shown),
		json.Unmarshal([]byte(outputs["stats --json"]), &counted)); err != nil || len(listed) != 1 || len(counted) != 1 {
		t.Fatalf("decode the JSON outputs: %v (%d jobs, %d stats)", err, len(listed), len(counted))
	}
	for name, j := range map[string]jobOut{"list --json": listed[0], "show --json": shown} {
		if j.Kind != kind || j.Queue != queueName || j.AttemptedBy != attemptedBy || j.Result != "done \u009b2J" ||
			j.Payload["note"] != "\x1b]0;pwned\x07" || j.Payload["c1"] != "\u009b31m" || j.Payload["del"] != "x\x7f" ||
			len(j.Errors) != 2 || j.Errors[0].Error != firstErr || j.Errors[1].Error != lastErr {
			t.Errorf("jobs %s decodes to %+v; want the stored strings", name, j)
		}
	}
	if counted[0].Queue != queueName {
		t.Errorf("stats --json decodes the queue to %q; want %q", counted[0].Queue, queueName)
	}
}

// Defect 7: jobs that no running worker can take show up in tasq stats, by
// queue and kind, with the age of the oldest.
func TestStatsShowsJobsNoWorkerServes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	e.dispatch(t, ctx, &demo.SendEmail{To: "ann@example.com", Subject: "Hi"})
	r := run(ctx, cli.Options{}, "stats", "--database-url", e.dsn)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !regexp.MustCompile(`waiting for a worker that knows their kind[^\n]*\n\s*QUEUE\s+KIND\s+JOBS\s+OLDEST\n\s*emails\s+SendEmail\s+1\s+\d+s ago`).MatchString(r.out) {
		t.Errorf("stats does not show the unserved SendEmail job:\n%s", r.out)
	}
}

func TestJobsPurge(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	var ids []uuid.UUID
	for range 3 {
		ids = append(ids, e.dispatch(t, ctx, &demo.SendEmail{To: "x@example.com"}))
	}
	keep := e.dispatch(t, ctx, &demo.SendEmail{To: "new@example.com"})
	pool := e.adapter.Pool()
	if _, err := pool.Exec(ctx, `UPDATE tasq_jobs SET state = 'completed', finished_at = now() - interval '2 days' WHERE id = ANY($1)`, ids); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE tasq_jobs SET state = 'completed', finished_at = now() WHERE id = $1`, keep); err != nil {
		t.Fatal(err)
	}
	purge := func(args ...string) result {
		return run(ctx, cli.Options{}, append(append([]string{"jobs", "purge"}, args...), "--database-url", e.dsn)...)
	}
	for _, bad := range [][]string{
		{"--state", "completed", "--dry-run"},                    // no age
		{"--state", "running", "--older-than", "1h", "--yes"},    // not a finished state
		{"--state", "completed", "--older-than", "1h"},           // neither --dry-run nor --yes
		{"--state", "completed", "--older-than", "-1h", "--yes"}, // negative age
		{"--state", "completed", "--older-than", "1h", "--queue", "a b", "--yes"},
	} {
		if r := purge(bad...); r.err == nil {
			t.Errorf("purge %v succeeded; want an error", bad)
		}
	}
	r := purge("--state", "completed", "--older-than", "24h", "--dry-run")
	if r.err != nil || !strings.Contains(r.out, "3 completed jobs of all queues") || !strings.Contains(r.out, "nothing deleted") {
		t.Fatalf("dry run: %v\n%s", r.err, r.out)
	}
	r = purge("--state", "completed", "--older-than", "24h", "--yes", "--batch", "2")
	if r.err != nil || !strings.Contains(r.out, "deleted 3 completed jobs") {
		t.Fatalf("purge: %v\n%s", r.err, r.out)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&left); err != nil || left != 1 {
		t.Fatalf("%d jobs left (%v), want only the recent one", left, err)
	}
}
