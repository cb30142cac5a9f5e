package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
)

// backendEnv is a fresh, isolated store on one backend other than
// PostgreSQL: the URL the CLI is given, and an adapter and a client opened
// from it the way the CLI opens them (queue.OpenAdapter).
type backendEnv struct {
	driver  string
	url     string
	adapter queue.Adapter
	client  *queue.Client
}

// withParam adds the query parameter key=value to the URL u.
func withParam(u, key, value string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + key + "=" + url.QueryEscape(value)
}

// backendURL returns the CLI URL of a fresh store on driver: a key prefix
// of its own on Redis, a migrated database of its own on MySQL, a queue-name
// prefix of its own on SQS; each is removed when the test ends.
func backendURL(t *testing.T, driver string) string {
	t.Helper()
	switch driver {
	case "redis":
		return withParam(testredis.URL(), "key_prefix", testredis.NewPrefix(t))
	case "mysql":
		return "mysql://" + testmysql.NewDatabase(t)
	case "sqs":
		return withParam(testsqs.Endpoint(t), "prefix", testsqs.Prefix(t))
	}
	t.Fatalf("no test store for driver %q", driver)
	return ""
}

func newBackendEnv(t *testing.T, ctx context.Context, driver string) *backendEnv {
	t.Helper()
	u := backendURL(t, driver)
	ad, err := queue.OpenAdapter(ctx, driver, u)
	if err != nil {
		t.Fatalf("OpenAdapter(%s, %s): %v", driver, u, err)
	}
	t.Cleanup(ad.Close)
	c, err := queue.NewClient(ad)
	if err != nil {
		t.Fatal(err)
	}
	return &backendEnv{driver: driver, url: u, adapter: ad, client: c}
}

func (e *backendEnv) dispatch(t *testing.T, ctx context.Context, task any, opts ...queue.DispatchOption) uuid.UUID {
	t.Helper()
	id, err := e.client.Dispatch(ctx, task, opts...)
	if err != nil {
		t.Fatalf("dispatch %T on %s: %v", task, e.driver, err)
	}
	return id
}

// run runs tasq with args and the env's URL, without a --driver: the URL's
// scheme selects the backend.
func (e *backendEnv) run(ctx context.Context, opts cli.Options, args ...string) result {
	return run(ctx, opts, append(args, "--database-url", e.url)...)
}

// mustRun is run that fails the test on an error.
func (e *backendEnv) mustRun(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	r := e.run(ctx, cli.Options{}, args...)
	if r.err != nil {
		t.Fatalf("tasq %s on %s: %v\n%s", strings.Join(args, " "), e.driver, r.err, r.errOut)
	}
	return r.out
}

// reader returns the env's adapter as a queue.JobReader, failing the test
// when the backend has none.
func (e *backendEnv) reader(t *testing.T) queue.JobReader {
	t.Helper()
	jr, ok := e.adapter.(queue.JobReader)
	if !ok {
		t.Fatalf("the %s adapter is no queue.JobReader", e.driver)
	}
	return jr
}

// stats returns `tasq stats --json` as "queue/state" -> count.
func (e *backendEnv) stats(t *testing.T, ctx context.Context) map[string]int64 {
	t.Helper()
	var list []struct {
		Queue string `json:"queue"`
		State string `json:"state"`
		Count int64  `json:"count"`
	}
	out := e.mustRun(t, ctx, "stats", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("stats --json on %s printed %q: %v", e.driver, out, err)
	}
	m := map[string]int64{}
	for _, s := range list {
		m[s.Queue+"/"+s.State] = s.Count
	}
	return m
}

// waitFor polls cond every 20ms until it holds, failing the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v (%s)", what, within, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEveryBackend runs migrate, stats, worker and jobs against Redis,
// MySQL and SQS, each selected by its URL's scheme alone.
func TestEveryBackend(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"redis", "mysql", "sqs"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := newBackendEnv(t, ctx, driver)
			byID := driver != "sqs" // SQS cannot look a job up by ID

			// migrate: the SQL backend reports its version; the others say
			// they need none, and down has nothing to roll back.
			up, version := e.mustRun(t, ctx, "migrate", "up"), e.mustRun(t, ctx, "migrate", "version")
			if driver == "mysql" {
				v := shippedVersion(t, "mysql")
				if !strings.Contains(up, fmt.Sprintf("schema is at version %d (dirty=false)", v)) ||
					!strings.Contains(version, fmt.Sprintf("version %d (dirty=false)", v)) {
					t.Errorf("migrate up printed %q, version %q; want version %d", up, version, v)
				}
			} else {
				if want := driver + " needs no migrations"; !strings.Contains(up, want) || !strings.Contains(version, want) {
					t.Errorf("migrate up printed %q, version %q; want both to say %q", up, version, want)
				}
				r := e.run(ctx, cli.Options{}, "migrate", "down", "--yes")
				if r.err == nil || !errors.Is(r.err, cli.ErrNoSchema) || !strings.Contains(r.err.Error(), "nothing to do") ||
					!strings.Contains(r.err.Error(), "to delete TasQ's jobs") {
					t.Errorf("migrate down: %v; want ErrNoSchema saying how to delete the data", r.err)
				}
				if strings.Contains(r.errOut, "Usage:") {
					t.Errorf("migrate down printed the usage:\n%s", r.errOut)
				}
			}

			email := e.dispatch(t, ctx, &demo.SendEmail{To: "cy@example.com", Subject: "Hey"})
			payment := e.dispatch(t, ctx, &demo.ProcessPayment{UserID: 3, AmountCents: -200})
			later := e.dispatch(t, ctx, &demo.GenerateReport{ReportID: 4}, queue.Delay(time.Hour))

			// stats shows the dispatched jobs.
			if got := e.stats(t, ctx); got["emails/available"] != 1 || got["payments/available"] != 1 || got["reports/scheduled"] != 1 {
				t.Errorf("stats before the worker = %v; want one available email and payment, one scheduled report", got)
			}

			// worker runs them to completion, then stops cleanly when its
			// context is cancelled (as SIGINT does).
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var taskOut syncBuffer
			opts := cli.Options{Registry: demoRegistry(t), Logger: quietLogger()}
			done := make(chan result, 1)
			go func() {
				done <- e.run(demo.WithOutput(wctx, &taskOut), opts,
					"worker", "--poll-interval", "100ms", "--shutdown-grace", "2s")
			}()
			waitFor(t, 30*time.Second, "the worker runs both jobs", func() (bool, string) {
				if byID {
					je, err1 := e.reader(t).GetJob(ctx, email)
					jp, err2 := e.reader(t).GetJob(ctx, payment)
					if err := errors.Join(err1, err2); err != nil {
						t.Fatalf("GetJob: %v", err)
					}
					return je.State == queue.StateCompleted && jp.State == queue.StateFailed,
						"email " + string(je.State) + ", payment " + string(jp.State)
				}
				sr, ok := e.adapter.(queue.StatsReader)
				if !ok {
					t.Fatalf("the %s adapter is no queue.StatsReader", driver)
				}
				st, err := sr.Stats(ctx)
				if err != nil {
					t.Fatalf("Stats: %v", err)
				}
				m := map[string]int64{}
				for _, s := range st {
					m[s.Queue+"/"+string(s.State)] = s.Count
				}
				return strings.Contains(taskOut.String(), "Sending email to cy@example.com") && m["payments/failed"] == 1 &&
					m["emails/available"]+m["emails/running"] == 0, fmt.Sprintf("stats %v, task output %q", m, taskOut.String())
			})
			cancel()
			if r := waitDone(t, done, 20*time.Second, "the worker after cancel"); r.err != nil {
				t.Fatalf("worker on %s: %v\n%s", driver, r.err, r.errOut)
			}
			for _, want := range []string{"Sending email to cy@example.com: Hey", "Payment failed for user 3: invalid payment amount"} {
				if !strings.Contains(taskOut.String(), want) {
					t.Errorf("task output %q lacks %q", taskOut.String(), want)
				}
			}

			got := e.stats(t, ctx)
			if got["payments/failed"] != 1 || got["reports/scheduled"] != 1 || (byID && got["emails/completed"] != 1) {
				t.Errorf("stats after the worker = %v; want a failed payment, a scheduled report and (but on SQS) a completed email", got)
			}
			if table := e.mustRun(t, ctx, "stats"); !regexp.MustCompile(`(?m)^payments\s+0\s+0\s+0\s+0\s+0\s+1\s+0\s+1$`).MatchString(table) {
				t.Errorf("stats table:\n%s", table)
			}

			if byID {
				checkJobsCommands(t, ctx, e, email, payment, later)
			} else {
				checkJobsUnsupported(t, ctx, e, payment)
			}
		})
	}
}

// checkJobsCommands runs every jobs subcommand on a backend that keeps jobs
// by ID: email completed, payment failed, later scheduled.
func checkJobsCommands(t *testing.T, ctx context.Context, e *backendEnv, email, payment, later uuid.UUID) {
	t.Helper()
	out := e.mustRun(t, ctx, "jobs", "list")
	for id, want := range map[uuid.UUID]*regexp.Regexp{
		email:   regexp.MustCompile(`(?m)^` + email.String() + `\s+SendEmail\s+emails\s+completed\s+1/4\s`),
		payment: regexp.MustCompile(`(?m)^` + payment.String() + `\s+ProcessPayment\s+payments\s+failed\s+1/11\s.*invalid payment amount`),
		later:   regexp.MustCompile(`(?m)^` + later.String() + `\s+GenerateReport\s+reports\s+scheduled\s+0/4\s`),
	} {
		if !want.MatchString(out) {
			t.Errorf("jobs list has no line for %s matching %v:\n%s", id, want, out)
		}
	}
	if out = e.mustRun(t, ctx, "jobs", "list", "--state", "failed"); !strings.Contains(out, payment.String()) || strings.Contains(out, email.String()) {
		t.Errorf("jobs list --state failed:\n%s", out)
	}
	out = e.mustRun(t, ctx, "jobs", "show", payment.String())
	for _, want := range []string{"state:         failed", `"amount_cents": -200`, "errors (1, oldest first):", "invalid payment amount"} {
		if !strings.Contains(out, want) {
			t.Errorf("jobs show lacks %q:\n%s", want, out)
		}
	}

	if out = e.mustRun(t, ctx, "jobs", "retry", payment.String()); !strings.Contains(out, "retried") {
		t.Errorf("jobs retry printed %q", out)
	}
	if j, err := e.reader(t).GetJob(ctx, payment); err != nil || j.State != queue.StateAvailable {
		t.Errorf("after retry: %v, %v; want available", j, err)
	}
	if out = e.mustRun(t, ctx, "jobs", "cancel", later.String()); !strings.Contains(out, "cancelled") {
		t.Errorf("jobs cancel printed %q", out)
	}
	if j, err := e.reader(t).GetJob(ctx, later); err != nil || j.State != queue.StateCancelled {
		t.Errorf("after cancel: %v, %v; want cancelled", j, err)
	}
	r := e.run(ctx, cli.Options{}, "jobs", "retry", email.String())
	if r.err == nil || !errors.Is(r.err, queue.ErrJobState) {
		t.Errorf("retry of a completed job: %v; want ErrJobState", r.err)
	}
	if out = e.mustRun(t, ctx, "jobs", "delete", email.String()); !strings.Contains(out, "deleted") {
		t.Errorf("jobs delete printed %q", out)
	}
	if _, err := e.reader(t).GetJob(ctx, email); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("GetJob after delete: %v; want ErrJobNotFound", err)
	}
	r = e.run(ctx, cli.Options{}, "jobs", "show", email.String())
	var nf *cli.JobNotFoundError
	if !errors.As(r.err, &nf) || nf.ID != email {
		t.Errorf("jobs show of a deleted job: %v; want a JobNotFoundError", r.err)
	}
}

// checkJobsUnsupported: the SQS adapter cannot look up, list or change
// single jobs, so it has neither capability, and every jobs subcommand fails
// with an UnsupportedError that names the backend and the capability and
// points to `tasq stats`.
func checkJobsUnsupported(t *testing.T, ctx context.Context, e *backendEnv, id uuid.UUID) {
	t.Helper()
	if _, ok := e.adapter.(queue.JobReader); ok {
		t.Errorf("the sqs adapter is a queue.JobReader; it cannot find jobs by ID")
	}
	if _, ok := e.adapter.(queue.JobEditor); ok {
		t.Errorf("the sqs adapter is a queue.JobEditor; it cannot find jobs by ID")
	}
	for _, c := range []struct {
		args       []string
		capability string
		cannot     string
	}{
		{[]string{"jobs", "list"}, "queue.JobReader", "it cannot look up or list single jobs"},
		{[]string{"jobs", "show", id.String()}, "queue.JobReader", "it cannot look up or list single jobs"},
		{[]string{"jobs", "retry", id.String()}, "queue.JobEditor", "it cannot retry, cancel or delete single jobs"},
		{[]string{"jobs", "cancel", id.String()}, "queue.JobEditor", "it cannot retry, cancel or delete single jobs"},
		{[]string{"jobs", "delete", id.String()}, "queue.JobEditor", "it cannot retry, cancel or delete single jobs"},
	} {
		cmd := strings.Join(c.args[:2], " ")
		r := e.run(ctx, cli.Options{}, c.args...)
		var ue *cli.UnsupportedError
		if !errors.As(r.err, &ue) || ue.Backend != "sqs" || ue.Command != cmd || ue.Capability != c.capability {
			t.Errorf("tasq %s on sqs: %v; want an UnsupportedError for sqs, %q and %s", cmd, r.err, cmd, c.capability)
			continue
		}
		if !errors.Is(r.err, errors.ErrUnsupported) {
			t.Errorf("tasq %s on sqs: %v does not match errors.ErrUnsupported", cmd, r.err)
		}
		for _, want := range []string{"`tasq " + cmd + "` is not supported on the sqs backend", c.cannot,
			"its adapter is no " + c.capability, "use `tasq stats`", "postgres, mysql or redis"} {
			if !strings.Contains(r.err.Error(), want) {
				t.Errorf("tasq %s on sqs: error %q lacks %q", cmd, r.err, want)
			}
		}
		if !strings.Contains(r.errOut, "Error: ") || strings.Contains(r.errOut, "Usage:") {
			t.Errorf("tasq %s on sqs printed:\n%s", cmd, r.errOut)
		}
	}
}

// TestMigrateMySQL takes an empty MySQL database through migrate up,
// version and down, as TestMigrateUpVersionDown does on PostgreSQL.
func TestMigrateMySQL(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := &backendEnv{driver: "mysql", url: "mysql://" + testmysql.NewEmptyDatabase(t)}
	step := func(want string, args ...string) {
		t.Helper()
		if out := e.mustRun(t, ctx, args...); !strings.Contains(out, want) {
			t.Fatalf("tasq %s printed %q; want it to contain %q", strings.Join(args, " "), out, want)
		}
	}
	r := e.run(ctx, cli.Options{}, "jobs", "list")
	if r.err == nil || !errors.Is(r.err, queue.ErrNotMigrated) || !strings.Contains(r.err.Error(), "migrate up") {
		t.Fatalf("jobs list on an unmigrated database: %v; want ErrNotMigrated saying to run migrate up", r.err)
	}
	v := shippedVersion(t, "mysql")
	step("no migration applied yet", "migrate", "version")
	step(fmt.Sprintf("schema is at version %d (dirty=false)", v), "migrate", "up")
	step(fmt.Sprintf("version %d (dirty=false)", v), "migrate", "version")
	step("no jobs yet", "stats")
	r = e.run(ctx, cli.Options{}, "migrate", "down")
	if r.err == nil || !strings.Contains(r.err.Error(), "--yes") {
		t.Fatalf("migrate down without --yes: %v; want one asking for --yes", r.err)
	}
	step("rolled back every migration", "migrate", "down", "--yes")
	step("no migration applied yet", "migrate", "version")
}

// TestDriverForURL checks the scheme table.
func TestDriverForURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:p@127.0.0.1:5432/app?sslmode=disable": "postgres",
		"postgresql://localhost/app":                        "postgres",
		"POSTGRES://localhost/app":                          "postgres",
		"host=127.0.0.1 port=5432 dbname=app":               "postgres",
		"mysql://root@tcp(127.0.0.1:3306)/app":              "mysql",
		"root:secret@tcp(127.0.0.1:3306)/app?tls=true":      "mysql",
		"tcp(localhost:3306)/app":                           "mysql",
		"app@unix(/run/mysqld/mysqld.sock)/app":             "mysql",
		"redis://127.0.0.1:6379/0?key_prefix=x:":            "redis",
		"rediss://user:pw@cache.example.com:6380/1":         "redis",
		"sqs://us-east-1?prefix=x-":                         "sqs",
		"sqs://":                                            "sqs",
		"http://127.0.0.1:9324?prefix=x-":                   "sqs",
		"https://sqs.eu-west-1.amazonaws.com":               "sqs",
	} {
		if got, err := cli.DriverForURL(in); err != nil || got != want {
			t.Errorf("DriverForURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "app", "127.0.0.1:5432", "amqp://guest@localhost/", "file:///tmp/db", "unix:///tmp/redis.sock"} {
		if got, err := cli.DriverForURL(in); !errors.Is(err, cli.ErrUnknownScheme) {
			t.Errorf("DriverForURL(%q) = %q, %v; want ErrUnknownScheme", in, got, err)
		}
	}
}

// TestBackendSelection: unknown schemes and --driver overrides give errors
// that say what to do, before any connection where possible.
func TestBackendSelection(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	reg := demoRegistry(t)
	redisURL := withParam(testredis.URL(), "key_prefix", testredis.NewPrefix(t))
	forms := []string{"postgres://", "mysql://", "redis://", "sqs://", "http://", "--driver", "TASQ_DRIVER"}
	cases := []struct {
		name string
		opts cli.Options
		args []string
		want []string
		is   error
	}{
		{"unknown scheme stats", cli.Options{}, []string{"stats", "--database-url", "amqp://guest@127.0.0.1/"}, append([]string{`unknown scheme "amqp://"`}, forms...), cli.ErrUnknownScheme},
		{"unknown scheme worker", cli.Options{Registry: reg}, []string{"worker", "--database-url", "amqp://guest@127.0.0.1/"}, []string{`unknown scheme "amqp://"`}, cli.ErrUnknownScheme},
		{"unknown scheme migrate", cli.Options{}, []string{"migrate", "up", "--database-url", "amqp://guest@127.0.0.1/"}, []string{`unknown scheme "amqp://"`}, cli.ErrUnknownScheme},
		{"unknown scheme jobs", cli.Options{}, []string{"jobs", "list", "--database-url", "amqp://guest@127.0.0.1/"}, []string{`unknown scheme "amqp://"`}, cli.ErrUnknownScheme},
		{"no scheme", cli.Options{}, []string{"stats", "--database-url", "127.0.0.1:5432"}, append([]string{"no scheme"}, forms...), cli.ErrUnknownScheme},
		{"unknown driver", cli.Options{}, []string{"stats", "--driver", "rabbit", "--database-url", redisURL}, []string{`--driver "rabbit"`, "mysql, postgres, redis, sqs"}, queue.ErrUnknownDriver},
		{"unknown driver migrate", cli.Options{}, []string{"migrate", "up", "--driver", "rabbit", "--database-url", redisURL}, []string{`--driver "rabbit"`}, queue.ErrUnknownDriver},
		{"driver redis on a postgres URL", cli.Options{}, []string{"stats", "--driver", "redis", "--database-url", "postgres://127.0.0.1:1/x"}, []string{"open the redis backend"}, nil},
		{"driver sqs on a redis URL", cli.Options{}, []string{"jobs", "list", "--driver", "sqs", "--database-url", redisURL}, []string{"open the sqs backend", `unknown scheme "redis"`}, nil},
		{"driver mysql migrate on a redis URL", cli.Options{}, []string{"migrate", "version", "--driver", "mysql", "--database-url", redisURL}, []string{"MySQL DSN"}, nil},
		{"redis migrate unreachable", cli.Options{}, []string{"migrate", "up", "--database-url", "redis://127.0.0.1:1/0"}, []string{"open the redis backend", "127.0.0.1:1"}, nil},
		{"demo on redis", cli.Options{}, []string{"demo", "--database-url", redisURL}, []string{"tasq demo runs on PostgreSQL only", "selects redis", "`tasq worker`, `tasq jobs` and `tasq stats` work"}, nil},
		{"demo with driver mysql", cli.Options{}, []string{"demo", "--driver", "mysql", "--database-url", "postgres://127.0.0.1:1/x"}, []string{"runs on PostgreSQL only", "selects mysql"}, nil},
		{"bench on sqs", cli.Options{}, []string{"bench", "--database-url", "sqs://us-east-1"}, []string{"tasq bench runs on PostgreSQL only", "selects sqs", "`tasq worker` and `tasq stats` work"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(ctx, c.opts, c.args...)
			if r.err == nil {
				t.Fatalf("tasq %q succeeded; want an error. Output:\n%s", c.args, r.out)
			}
			for _, w := range c.want {
				if !strings.Contains(r.err.Error(), w) {
					t.Errorf("tasq %q: error %q lacks %q", c.args, r.err, w)
				}
			}
			if c.is != nil && !errors.Is(r.err, c.is) {
				t.Errorf("tasq %q: error %v does not wrap %v", c.args, r.err, c.is)
			}
			if strings.Contains(r.errOut, "Usage:") {
				t.Errorf("tasq %q printed the usage for a runtime error:\n%s", c.args, r.errOut)
			}
		})
	}
}

// TestDriverPrecedence: --driver beats TASQ_DRIVER, which beats the URL's
// scheme. (Not parallel: it sets the environment.)
func TestDriverPrecedence(t *testing.T) {
	ctx := testContext(t)
	redisURL := withParam(testredis.URL(), "key_prefix", testredis.NewPrefix(t))
	t.Setenv(cli.EnvDriver, "sqs")
	r := run(ctx, cli.Options{}, "stats", "--database-url", redisURL)
	if r.err == nil || !strings.Contains(r.err.Error(), "open the sqs backend") {
		t.Errorf("stats with TASQ_DRIVER=sqs on a redis URL: %v; want the sqs adapter to refuse it", r.err)
	}
	r = run(ctx, cli.Options{}, "stats", "--driver", "redis", "--database-url", redisURL)
	if r.err != nil || r.out != "no jobs yet\n" {
		t.Errorf("stats --driver redis with TASQ_DRIVER=sqs: %q, %v; want --driver to win", r.out, r.err)
	}
	t.Setenv(cli.EnvDriver, "redis")
	t.Setenv(cli.EnvDatabaseURL, redisURL)
	if r = run(ctx, cli.Options{}, "migrate", "up"); r.err != nil || !strings.Contains(r.out, "redis needs no migrations") {
		t.Errorf("migrate up from the environment: %q, %v", r.out, r.err)
	}
}
