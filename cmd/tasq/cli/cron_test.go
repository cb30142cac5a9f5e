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
	"github.com/tasqhq/tasq/queue"
)

// TestCron takes schedules through every tasq cron subcommand.
func TestCron(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	cron := func(args ...string) result {
		t.Helper()
		return run(ctx, cli.Options{}, append(append([]string{"cron"}, args...), "--database-url", e.dsn)...)
	}
	must := func(args ...string) string {
		t.Helper()
		r := cron(args...)
		if r.err != nil {
			t.Fatalf("tasq cron %s: %v\n%s", strings.Join(args, " "), r.err, r.errOut)
		}
		return r.out
	}
	if out := must("list"); out != "no schedules\n" {
		t.Errorf("list of none: %q", out)
	}
	out := must("add", "nightly-report", "--kind", "GenerateReport", "--cron", "0 3 * * *", "--tz", "Europe/Berlin",
		"--queue", "reports", "--payload", `{"report_id": 7}`, "--max-retries", "1", "--timeout", "10m")
	if !strings.Contains(out, "schedule nightly-report stored: 0 3 * * * (Europe/Berlin); next tick ") {
		t.Errorf("add printed %q", out)
	}
	must("add", "heartbeat", "--kind", "Ping", "--every", "90m", "--missed", "skip")
	if r := cron("add", "heartbeat", "--kind", "Other", "--every", "1h"); r.err == nil || !strings.Contains(r.err.Error(), "give --replace") {
		t.Errorf("add of a taken name: %v", r.err)
	}
	must("add", "heartbeat", "--kind", "Ping", "--every", "30m", "--missed", "skip", "--replace")

	out = must("list")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^NAME\s+WHEN\s+KIND\s+QUEUE\s+MISSED\s+NEXT\s+LAST RUN$`),
		regexp.MustCompile(`(?m)^heartbeat\s+every 30m\s+Ping\s+default\s+skip\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-$`),
		regexp.MustCompile(`(?m)^nightly-report\s+0 3 \* \* \* \(Europe/Berlin\)\s+GenerateReport\s+reports\s+run_once\s+\d{4}-`),
	} {
		if !want.MatchString(out) {
			t.Errorf("list does not match %v:\n%s", want, out)
		}
	}

	// trigger: a job now, the next tick unchanged.
	before, err := e.adapter.GetSchedule(ctx, "nightly-report")
	if err != nil {
		t.Fatal(err)
	}
	out = must("trigger", "nightly-report")
	m := regexp.MustCompile(`^schedule nightly-report triggered: job (\S+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("trigger printed %q", out)
	}
	j, err := e.adapter.GetJob(ctx, uuid.MustParse(m[1]))
	if err != nil || j.Kind != "GenerateReport" || j.Queue != "reports" || string(j.Payload) != `{"report_id": 7}` || j.MaxRetries != 1 || j.Timeout != 10*time.Minute {
		t.Fatalf("triggered job: %+v, %v", j, err)
	}
	after, _ := e.adapter.GetSchedule(ctx, "nightly-report")
	if !after.NextRunAt.Equal(before.NextRunAt) || after.LastJobID != j.ID {
		t.Errorf("after trigger: next %s (was %s), last job %s", after.NextRunAt, before.NextRunAt, after.LastJobID)
	}

	// pause and resume.
	if out := must("pause", "heartbeat"); out != "schedule heartbeat paused\n" {
		t.Errorf("pause printed %q", out)
	}
	if !regexp.MustCompile(`(?m)^heartbeat\s.*\spaused\s+-$`).MatchString(must("list")) {
		t.Errorf("list does not show heartbeat paused:\n%s", must("list"))
	}
	if out := must("resume", "heartbeat"); !regexp.MustCompile(`^schedule heartbeat resumed; next tick \d{4}-`).MatchString(out) {
		t.Errorf("resume printed %q", out)
	}

	// --json: the tasq_schedules columns.
	var rows []map[string]any
	if err := json.Unmarshal([]byte(must("list", "--json")), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("list --json: %d rows, %v", len(rows), err)
	}
	hb := rows[0]
	if hb["name"] != "heartbeat" || hb["every_ms"] != float64(30*60*1000) || hb["cron"] != nil || hb["missed"] != "skip" || hb["paused"] != false {
		t.Errorf("heartbeat as JSON: %v", hb)
	}
	if nr := rows[1]; nr["cron"] != "0 3 * * *" || nr["time_zone"] != "Europe/Berlin" || nr["last_job_id"] != j.ID.String() {
		t.Errorf("nightly-report as JSON: %v", nr)
	}

	// remove, and the actions on a name no schedule has.
	if out := must("remove", "heartbeat"); out != "schedule heartbeat removed\n" {
		t.Errorf("remove printed %q", out)
	}
	for _, action := range []string{"pause", "resume", "trigger", "remove"} {
		r := cron(action, "heartbeat")
		if r.err == nil || !strings.Contains(r.err.Error(), `no schedule is named "heartbeat"`) {
			t.Errorf("cron %s of a removed schedule: %v", action, r.err)
		}
	}
}

// TestCronBadInput: tasq cron add refuses what cannot be a schedule and says
// what is wrong; nothing is stored.
func TestCronBadInput(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "x", "--kind", "K", "--cron", "0 3 * *"}, `Cron "0 3 * *" does not parse`},
		{[]string{"add", "x", "--kind", "K", "--cron", "0 3 * * *", "--tz", "Europe/Atlantis"}, `TimeZone "Europe/Atlantis"`},
		{[]string{"add", "x", "--kind", "K", "--every", "-1s"}, "Every is -1s"},
		{[]string{"add", "x", "--kind", "K"}, "neither Cron nor Every"},
		{[]string{"add", "x", "--kind", "K", "--every", "1h", "--cron", "@daily"}, "both Cron"},
		{[]string{"add", "x", "--kind", "K", "--every", "1h", "--missed", "later"}, `--missed: tasq: invalid schedule: missed-tick policy "later" is unknown`},
		{[]string{"add", "", "--kind", "K", "--every", "1h"}, "the schedule name is empty"},
		{[]string{"add", "x", "--kind", "K", "--every", "1h", "--payload", "{"}, "Payload is not valid JSON"},
		{[]string{"add", "x", "--every", "1h"}, `required flag(s) "kind" not set`},
	} {
		r := run(ctx, cli.Options{}, append(append([]string{"cron"}, c.args...), "--database-url", e.dsn)...)
		if r.err == nil || !strings.Contains(r.err.Error(), c.want) {
			t.Errorf("tasq cron %s: %v; want an error saying %q", strings.Join(c.args, " "), r.err, c.want)
		}
	}
	if list, err := e.adapter.ListSchedules(ctx); err != nil || len(list) != 0 {
		t.Errorf("bad schedules were stored: %v, %v", list, err)
	}
	if _, err := e.adapter.GetSchedule(ctx, "x"); !errors.Is(err, queue.ErrScheduleNotFound) {
		t.Errorf("GetSchedule(x): %v", err)
	}
}

// TestCronOnOtherBackends: backends that keep no schedules say so.
func TestCronOnOtherBackends(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"redis", "mysql", "sqs"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := newBackendEnv(t, ctx, driver)
			if _, ok := e.adapter.(queue.Scheduler); ok {
				t.Skipf("the %s adapter keeps schedules now; this test is for those that do not", driver)
			}
			for _, args := range [][]string{{"cron", "list"}, {"cron", "trigger", "x"}, {"cron", "add", "x", "--kind", "K", "--every", "1h"}} {
				r := e.run(ctx, cli.Options{}, args...)
				var ue *cli.UnsupportedError
				if !errors.As(r.err, &ue) || ue.Backend != driver || ue.Capability != "queue.Scheduler" || !errors.Is(r.err, errors.ErrUnsupported) {
					t.Errorf("tasq %s on %s: %v; want an UnsupportedError", strings.Join(args, " "), driver, r.err)
					continue
				}
				if !strings.Contains(r.err.Error(), "it keeps no schedules (periodic jobs)") || !strings.Contains(r.err.Error(), "`tasq cron` needs postgres") {
					t.Errorf("tasq %s on %s: %v", strings.Join(args, " "), driver, r.err)
				}
			}
		})
	}
}
