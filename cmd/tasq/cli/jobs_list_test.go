package cli_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/queue"
)

// nextPage matches the line that ends a full page of `tasq jobs list`.
var nextPage = regexp.MustCompile(`(?m)^next page: (tasq jobs list .*)$`)

// `tasq jobs list` pages with --after: after a full page it prints the
// command for the next one on stderr, which keeps the filters; following it shows every job once,
// newest first, and the last page has no such line.
func TestJobsListPages(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	var want []uuid.UUID // newest first
	for i := range 23 {
		q := "mail"
		if i%4 == 0 {
			q = "other"
		}
		want = slices.Insert(want, 0, e.dispatch(t, ctx, &demo.SendEmail{To: "ann@example.com"}, queue.OnQueue(q)))
	}
	mail := slices.DeleteFunc(slices.Clone(want), func(id uuid.UUID) bool {
		j, err := e.adapter.GetJob(ctx, id)
		return err != nil || j.Queue != "mail"
	})

	for _, c := range []struct {
		args []string
		want []uuid.UUID
	}{
		{[]string{"--limit", "5"}, want},
		{[]string{"--limit", "4", "--queue", "mail", "--state", "available"}, mail},
	} {
		args := append([]string{"jobs", "list"}, c.args...)
		var got []uuid.UUID
		for page := 0; page < 20; page++ {
			r := run(ctx, cli.Options{}, append(args, "--database-url", e.dsn)...)
			if r.err != nil {
				t.Fatalf("tasq %s: %v", strings.Join(args, " "), r.err)
			}
			for _, l := range strings.Split(r.out, "\n") {
				if id, err := uuid.Parse(strings.Fields(l + " x")[0]); err == nil {
					got = append(got, id)
				}
			}
			if nextPage.MatchString(r.out) {
				t.Errorf("the next page command is on stdout:\n%s", r.out)
			}
			m := nextPage.FindStringSubmatch(r.errOut)
			if m == nil {
				break
			}
			for _, flag := range c.args {
				if !strings.Contains(m[1], flag) {
					t.Errorf("next page command %q lacks %q", m[1], flag)
				}
			}
			args = strings.Fields(m[1])[1:]
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("tasq jobs list %v, page by page: %v\nwant %v", c.args, got, c.want)
		}
	}

	// A page that is not full is the last: no next-page line.
	r := run(ctx, cli.Options{}, "jobs", "list", "--limit", "100", "--database-url", e.dsn)
	if r.err != nil || nextPage.MatchString(r.errOut) {
		t.Errorf("jobs list of all 23 jobs, 100 a page: %v\n%s", r.err, r.out)
	}
	r = run(ctx, cli.Options{}, "jobs", "list", "--after", "nope", "--database-url", e.dsn)
	if r.err == nil || !strings.Contains(r.err.Error(), `--after "nope" is not a job ID`) {
		t.Errorf("jobs list --after nope: %v; want an error naming the flag", r.err)
	}
}

// A backend that does not page by job ID yet ignores --after and lists the
// first page again: the command says so rather than looping.
func TestJobsListAfterOnOtherBackends(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"redis", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := newBackendEnv(t, ctx, driver)
			older := e.dispatch(t, ctx, &demo.SendEmail{To: "ann@example.com"})
			newer := e.dispatch(t, ctx, &demo.SendEmail{To: "bob@example.com"})
			r := e.run(ctx, cli.Options{}, "jobs", "list", "--after", newer.String())
			switch {
			case r.err != nil:
				if !strings.Contains(r.err.Error(), "--after: the "+driver+" backend does not page by job ID") {
					t.Errorf("jobs list --after on %s: %v; want it to say the backend cannot page", driver, r.err)
				}
			case strings.Contains(r.out, newer.String()) || !strings.Contains(r.out, older.String()):
				t.Errorf("jobs list --after %s on %s listed:\n%s\nwant only %s", newer, driver, r.out, older)
			}
		})
	}
}
