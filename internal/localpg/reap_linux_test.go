//go:build linux

package localpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasqhq/tasq/internal/staledir"
)

// staleDir is a crafted directory that looks like a cluster left behind:
// owner.pid names a dead process and data/postmaster.pid names postmaster.
type staleDir struct {
	path       string
	uid, gid   int // owner of everything; -1 keeps the creator's
	postmaster int
	dataLink   string // when set, data is a symlink to this directory instead
}

func (d staleDir) make(t *testing.T, owner int) {
	t.Helper()
	chown := func(p string) {
		if d.uid >= 0 {
			if err := os.Lchown(p, d.uid, d.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkdir := func(p string) {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		chown(p)
	}
	write := func(p, content string) {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		chown(p)
	}
	mkdir(d.path)
	write(filepath.Join(d.path, ownerFile), strconv.Itoa(owner))
	data := filepath.Join(d.path, "data")
	if d.dataLink != "" {
		if err := os.Symlink(d.dataLink, data); err != nil {
			t.Fatal(err)
		}
		chown(data)
		return
	}
	mkdir(data)
	// Enough for pg_ctl to take it for a cluster and signal the pid.
	write(filepath.Join(data, "PG_VERSION"), "15\n")
	write(filepath.Join(data, "postmaster.pid"), fmt.Sprintf("%d\n%s\n", d.postmaster, data))
}

// TestReapStaleLeavesOthersAlone checks reapStale's wiring of staledir (whose
// own tests cover the directory checks): crafted clusters left behind that
// name a running cluster's postmaster must neither stop it nor be removed,
// and one whose server is gone is removed.
func TestReapStaleLeavesOthersAlone(t *testing.T) {
	tmp := isolatedTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bins, err := findBinaries(nil)
	if err != nil {
		t.Fatalf("PostgreSQL binaries are required for this test: %v", err)
	}
	ra, err := currentRunAs()
	if err != nil {
		t.Fatal(err)
	}
	// A real running cluster of this process: its server must survive
	// directories that name its postmaster, and it must itself be left alone
	// (its owner lives).
	victim := startServer(t, ctx)
	victimPID, err := staledir.ReadPIDFile(filepath.Join(victim.dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	// Like this package's own directories: owned by the server's user.
	uid, gid := -1, -1
	if ra != nil {
		uid, gid = ra.uid, ra.gid
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	in := func(name string) string { return filepath.Join(tmp, dirPrefix+name) }
	cases := map[string]staleDir{
		"is a postgres working in " + victim.dataDir: {path: in("other-cluster"), uid: uid, gid: gid, postmaster: victimPID},
		"is a symlink": {path: in("data-symlink"), uid: uid, gid: gid, dataLink: victim.dataDir},
	}
	for _, d := range cases {
		d.make(t, dead.Process.Pid)
	}
	// A cluster left behind whose server is gone: nothing to stop, and removed.
	gone := staleDir{path: in("gone"), uid: uid, gid: gid, postmaster: dead.Process.Pid}
	gone.make(t, dead.Process.Pid)

	var mu sync.Mutex
	var logs []string
	reapStale(ctx, bins, ra, func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	})

	logged := strings.Join(logs, "\n")
	for why, d := range cases {
		if _, err := os.Lstat(filepath.Join(d.path, ownerFile)); err != nil {
			t.Errorf("cleanup removed %s: %v", d.path, err)
		}
		if !strings.Contains(logged, "localpg: leaving "+d.path+" alone") || !strings.Contains(logged, why) {
			t.Errorf("the log does not say that %s was left alone because it %q", d.path, why)
		}
	}
	if got := queryString(t, ctx, victim.DSN(), "SELECT 'up'"); got != "up" {
		t.Errorf("the running cluster answers %q", got)
	}
	if _, err := os.Stat(victim.dir); err != nil {
		t.Errorf("the running cluster's directory: %v", err)
	}
	if _, err := os.Lstat(gone.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster left behind with no server running was not removed (err %v)", err)
	}
}
