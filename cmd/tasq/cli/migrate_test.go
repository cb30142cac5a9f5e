package cli_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
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

	v := shippedVersion(t, "postgres")
	step("no migration applied yet", "migrate", "version")
	step(fmt.Sprintf("schema is at version %d (dirty=false)", v), "migrate", "up")
	step(fmt.Sprintf("version %d (dirty=false)", v), "migrate", "version")
	step(fmt.Sprintf("schema is at version %d (dirty=false)", v), "migrate", "up") // idempotent

	r := run(ctx, cli.Options{}, append([]string{"migrate", "down"}, db...)...)
	if r.err == nil || !strings.Contains(r.err.Error(), "--yes") {
		t.Fatalf("migrate down without --yes: err %v; want one asking for --yes", r.err)
	}
	step(fmt.Sprintf("version %d (dirty=false)", v), "migrate", "version") // nothing was dropped

	step("rolled back every migration", "migrate", "down", "--yes")
	step("no migration applied yet", "migrate", "version")

	r = run(ctx, cli.Options{}, append([]string{"jobs", "list"}, db...)...)
	if r.err == nil || !strings.Contains(r.err.Error(), "migrate up") {
		t.Fatalf("jobs list on an unmigrated database: err %v; want one saying to run migrate up", r.err)
	}
}

// shippedVersion returns the newest schema version the repository ships for
// dialect ("postgres" or "mysql"): the highest number among the migration
// files in migrations/<dialect>. `tasq migrate up` must reach it.
func shippedVersion(t *testing.T, dialect string) uint {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "migrations", dialect, "*.up.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s migrations found under migrations/%s (%v)", dialect, dialect, err)
	}
	num := regexp.MustCompile(`^(\d+)_`)
	var latest uint
	for _, f := range files {
		m := num.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			t.Fatalf("migration file %s has no version number", f)
		}
		v, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil {
			t.Fatalf("migration file %s: %v", f, err)
		}
		latest = max(latest, uint(v))
	}
	return latest
}
