package cli_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/queue"
)

// TestMissingDatabaseURL: every command that needs a database says how to
// give one when neither the flag nor the environment does.
func TestMissingDatabaseURL(t *testing.T) {
	t.Setenv(cli.EnvDatabaseURL, "")
	ctx := testContext(t)
	opts := cli.Options{Registry: demoRegistry(t), Logger: quietLogger()}
	for _, args := range [][]string{
		{"migrate", "up"}, {"migrate", "version"}, {"migrate", "down", "--yes"},
		{"jobs", "list"}, {"jobs", "show", uuid.NewString()}, {"jobs", "retry", uuid.NewString()},
		{"stats"}, {"worker"},
	} {
		r := run(ctx, opts, args...)
		if r.err == nil || !strings.Contains(r.err.Error(), "set TASQ_DATABASE_URL or pass --database-url") {
			t.Errorf("tasq %s without a URL: %v; want the error to say how to give one", strings.Join(args, " "), r.err)
		}
		if !errors.Is(r.err, cli.ErrNoDatabaseURL) {
			t.Errorf("tasq %s: %v does not wrap ErrNoDatabaseURL", strings.Join(args, " "), r.err)
		}
		if strings.Contains(r.errOut, "Usage:") {
			t.Errorf("tasq %s printed the usage for a runtime error:\n%s", strings.Join(args, " "), r.errOut)
		}
	}
}

// TestBadInput: bad IDs, unknown jobs, bad flags and unreachable servers give
// errors that say what is wrong.
func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	db := []string{"--database-url", e.dsn}
	unreachable := []string{"--database-url", "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=5"}
	reg := demoRegistry(t)
	unknown := uuid.New()

	cases := []struct {
		name string
		opts cli.Options
		args []string
		want []string
		is   error
	}{
		{"show bad id", cli.Options{}, append([]string{"jobs", "show", "nope"}, db...), []string{`"nope" is not a job ID`, "UUID"}, nil},
		{"retry bad id", cli.Options{}, append([]string{"jobs", "retry", "12345"}, db...), []string{`"12345" is not a job ID`}, nil},
		{"cancel bad id", cli.Options{}, append([]string{"jobs", "cancel", "x"}, db...), []string{`"x" is not a job ID`}, nil},
		{"delete bad id", cli.Options{}, append([]string{"jobs", "delete", ""}, db...), []string{`"" is not a job ID`}, nil},
		{"show unknown", cli.Options{}, append([]string{"jobs", "show", unknown.String()}, db...), []string{"job " + unknown.String() + " not found"}, queue.ErrJobNotFound},
		{"retry unknown", cli.Options{}, append([]string{"jobs", "retry", unknown.String()}, db...), []string{"job " + unknown.String() + " not found"}, queue.ErrJobNotFound},
		{"cancel unknown", cli.Options{}, append([]string{"jobs", "cancel", unknown.String()}, db...), []string{"job " + unknown.String() + " not found"}, queue.ErrJobNotFound},
		{"delete unknown", cli.Options{}, append([]string{"jobs", "delete", unknown.String()}, db...), []string{"job " + unknown.String() + " not found"}, queue.ErrJobNotFound},
		{"show no id", cli.Options{}, []string{"jobs", "show"}, []string{"accepts 1 arg"}, nil},

		{"worker nil registry", cli.Options{}, append([]string{"worker"}, db...), []string{"no task types registered", "cli.NewWorkerCommand", "queue.NewRegistry()"}, nil},
		{"worker empty registry", cli.Options{Registry: queue.NewRegistry()}, append([]string{"worker"}, db...), []string{"no task types registered"}, nil},
		{"worker negative concurrency", cli.Options{Registry: reg}, append([]string{"worker", "--concurrency", "-1"}, db...), []string{"--concurrency is -1", "must not be negative"}, nil},
		{"worker zero concurrency", cli.Options{Registry: reg}, append([]string{"worker", "--concurrency", "0"}, db...), []string{"--concurrency is 0"}, nil},
		{"worker negative max tasks", cli.Options{Registry: reg}, append([]string{"worker", "--max-tasks", "-3"}, db...), []string{"--max-tasks is -3"}, nil},
		{"worker empty queue name", cli.Options{Registry: reg}, append([]string{"worker", "--queues", "high,,low"}, db...), []string{"queue name 2 is empty"}, nil},
		{"worker no queues", cli.Options{Registry: reg}, append([]string{"worker", "--queues", ""}, db...), []string{"--queues is empty"}, nil},
		{"worker queue twice", cli.Options{Registry: reg}, append([]string{"worker", "--queues", "a,b,a"}, db...), []string{`"a" is listed twice`}, nil},
		{"worker bad queue name", cli.Options{Registry: reg}, append([]string{"worker", "--queues", "a\tb"}, db...), []string{"whitespace"}, nil},
		{"worker short lease", cli.Options{Registry: reg}, append([]string{"worker", "--lease", "10ms"}, db...), []string{"--lease 10ms is too short"}, nil},
		{"worker negative grace", cli.Options{Registry: reg}, append([]string{"worker", "--shutdown-grace", "-1s"}, db...), []string{"--shutdown-grace is -1s"}, nil},
		{"worker bad duration", cli.Options{Registry: reg}, append([]string{"worker", "--poll-interval", "soon"}, db...), []string{`invalid argument "soon"`}, nil},
		{"list bad state", cli.Options{}, append([]string{"jobs", "list", "--state", "done"}, db...), []string{"--state", `unknown job state "done"`}, nil},
		{"list negative limit", cli.Options{}, append([]string{"jobs", "list", "--limit", "-1"}, db...), []string{"--limit is -1"}, nil},
		{"list negative since", cli.Options{}, append([]string{"jobs", "list", "--since", "-1h"}, db...), []string{"--since is -1h0m0s"}, nil},
		{"demo zero deadline", cli.Options{}, append([]string{"demo", "--deadline", "0s"}, db...), []string{"--deadline is 0s"}, nil},
		{"unknown command", cli.Options{}, []string{"jbos"}, []string{`unknown command "jbos"`}, nil},

		{"unreachable jobs list", cli.Options{}, append([]string{"jobs", "list"}, unreachable...), []string{"cannot reach PostgreSQL at 127.0.0.1:1"}, nil},
		{"unreachable stats", cli.Options{}, append([]string{"stats"}, unreachable...), []string{"cannot reach PostgreSQL at 127.0.0.1:1"}, nil},
		{"unreachable show", cli.Options{}, append([]string{"jobs", "show", unknown.String()}, unreachable...), []string{"cannot reach PostgreSQL at 127.0.0.1:1"}, nil},
		{"unreachable worker", cli.Options{Registry: reg}, append([]string{"worker"}, unreachable...), []string{"cannot reach PostgreSQL at 127.0.0.1:1"}, nil},
		{"unreachable migrate up", cli.Options{}, append([]string{"migrate", "up"}, unreachable...), []string{"cannot reach database"}, nil},
		{"unreachable migrate version", cli.Options{}, append([]string{"migrate", "version"}, unreachable...), []string{"cannot reach database"}, nil},
		{"unreachable demo", cli.Options{}, append([]string{"demo"}, unreachable...), []string{"cannot reach database"}, nil},
		{"bad url", cli.Options{}, []string{"stats", "--database-url", "postgres://[::1"}, []string{"cannot parse database URL"}, nil},
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
			if !strings.Contains(r.errOut, "Error: ") {
				t.Errorf("tasq %q did not print the error; stderr:\n%s", c.args, r.errOut)
			}
		})
	}
}
