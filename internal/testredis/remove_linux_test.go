//go:build linux

package testredis

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRemoveStaleLeavesOthersAlone crafts directories that look like servers'
// directories left behind (their owner is dead) but are not certain to be
// this package's: removeStale must leave them, and what they hold, alone and
// say why. A genuine leftover is still removed.
func TestRemoveStaleLeavesOthersAlone(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name  string
		path  string // the directory made
		found string // what removeStale's glob finds: path, or a symlink to it
		mode  os.FileMode
		uid   int // owner of the directory and its file; -1 keeps the test's
		why   string
	}
	mk := func(c tc) {
		t.Helper()
		if err := os.Mkdir(c.path, c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.path, c.mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		f := filepath.Join(c.path, ownerFile)
		if err := os.WriteFile(f, []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		if c.uid >= 0 {
			for _, p := range []string{c.path, f} {
				if err := os.Lchown(p, c.uid, c.uid); err != nil {
					t.Fatal(err)
				}
			}
		}
		if c.found != c.path {
			if err := os.Symlink(c.path, c.found); err != nil {
				t.Fatal(err)
			}
		}
	}
	in := func(name string) string { return filepath.Join(tmp, dirPrefix+name) }
	cases := []tc{
		{name: "group-writable", path: in("group-writable"), mode: 0o770, uid: -1, why: "writable by group or others"},
		{name: "link", path: filepath.Join(tmp, "link-target"), found: in("link"), mode: 0o700, uid: -1, why: "is a symlink"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, tc{name: "nobody", path: in("nobody"), mode: 0o755, uid: 65534, why: "owned by uid 65534"})
	} else {
		t.Log("not root: cannot make a directory owned by another user; that case is skipped")
	}
	for i := range cases {
		if cases[i].found == "" {
			cases[i].found = cases[i].path
		}
		mk(cases[i])
	}
	gone := tc{name: "gone", path: in("gone"), found: in("gone"), mode: 0o700, uid: -1}
	mk(gone)

	var logs bytes.Buffer
	removeStale(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Logf("removeStale logged:\n%s", logs.String())

	for _, c := range cases {
		if _, err := os.Lstat(c.found); err != nil {
			t.Errorf("%s: removeStale removed %s: %v", c.name, c.found, err)
		}
		if _, err := os.Lstat(filepath.Join(c.path, ownerFile)); err != nil {
			t.Errorf("%s: removeStale removed what %s holds: %v", c.name, c.found, err)
		}
		if !strings.Contains(logs.String(), "dir="+c.found+" ") || !strings.Contains(logs.String(), c.why) {
			t.Errorf("%s: the log does not say that %s was left alone because it %q", c.name, c.found, c.why)
		}
	}
	if _, err := os.Lstat(gone.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removeStale left %s, whose owner (pid %d) is gone (err %v)", gone.path, dead.Process.Pid, err)
	}
}
