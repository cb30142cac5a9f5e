package cli_test

import (
	"strings"
	"testing"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/internal/testpg"
)

func TestMigrateUpVersionDown(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := testpg.NewEmptyDatabase(t)
	db := []string{"--database-url", dsn}
	step := func(want string, args ...string) {
		t.Helper()
		r := run(ctx, cli.Options{}, append(args, db...)...)
		if r.err != nil {
			t.Fatalf("tasq %s: %v\n%s", strings.Join(args, " "), r.err, r.errOut)
		}
		if !strings.Contains(r.out, want) {
			t.Fatalf("tasq %s printed %q; want it to contain %q", strings.Join(args, " "), r.out, want)
		}
	}

	step("no migration applied yet", "migrate", "version")
	step("schema is at version 1 (dirty=false)", "migrate", "up")
	step("version 1 (dirty=false)", "migrate", "version")
	step("schema is at version 1 (dirty=false)", "migrate", "up") // idempotent

	r := run(ctx, cli.Options{}, append([]string{"migrate", "down"}, db...)...)
	if r.err == nil || !strings.Contains(r.err.Error(), "--yes") {
		t.Fatalf("migrate down without --yes: err %v; want one asking for --yes", r.err)
	}
	step("version 1 (dirty=false)", "migrate", "version") // nothing was dropped

	step("rolled back every migration", "migrate", "down", "--yes")
	step("no migration applied yet", "migrate", "version")

	r = run(ctx, cli.Options{}, append([]string{"jobs", "list"}, db...)...)
	if r.err == nil || !strings.Contains(r.err.Error(), "migrate up") {
		t.Fatalf("jobs list on an unmigrated database: err %v; want one saying to run migrate up", r.err)
	}
}
