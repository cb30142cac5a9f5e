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
)

// sleeper is an unrelated live process, started by the test and killed when
// it ends.
type sleeper struct {
	pid  int
	done chan struct{} // closed when it has exited and been waited for
}

// startSleeper starts `sleep 300` as the user the servers run as (ra; nil is
// the current user), so that a pg_ctl run as that user could signal it.
func startSleeper(t *testing.T, ra *runAs) sleeper {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	ra.apply(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	sl := sleeper{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(sl.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-sl.done })
	return sl
}

// alive reports whether the sleeper still runs (not exited, not a zombie).
func (sl sleeper) alive() bool {
	select {
	case <-sl.done:
		return false
	default:
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(sl.pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...; comm may hold spaces, so look after the last ')'.
	s := string(stat)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(rest) > 0 && rest[0] != "Z" && rest[0] != "X"
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// staleDir describes a crafted directory that looks like a cluster left
// behind: owner.pid names a dead process and data/postmaster.pid names
// postmaster.
type staleDir struct {
	path       string
	mode       os.FileMode // of the directory and data/
	uid, gid   int         // owner of everything; -1 keeps the creator's
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
		if err := os.Mkdir(p, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, d.mode); err != nil { // whatever the umask
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

// TestReapStaleLeavesOthersAlone crafts directories that look like clusters
// left behind but are not certain to be this package's, each naming a live
// process in its postmaster.pid: cleanup must neither signal that process nor
// remove the directory. One crafted cluster whose server is gone is removed.
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
	victimPID, err := readPIDFile(filepath.Join(victim.dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}

	// Like this package's own directories: owned by the server's user.
	uid, gid := -1, -1
	if ra != nil {
		uid, gid = ra.uid, ra.gid
	}
	dead := deadPID(t)
	type tc struct {
		name    string
		dir     staleDir
		sleeper *sleeper // the live process it names, when not the victim's server
		link    string   // when set, the glob finds this symlink to dir.path
		why     string   // what the log must say
	}
	var cases []tc
	add := func(name string, d staleDir, withSleeper bool, why string) *tc {
		d.path = filepath.Join(tmp, dirPrefix+name)
		c := tc{name: name, dir: d, why: why}
		if withSleeper {
			sl := startSleeper(t, ra)
			c.sleeper = &sl
			c.dir.postmaster = sl.pid
		}
		cases = append(cases, c)
		return &cases[len(cases)-1]
	}
	add("unrelated", staleDir{mode: 0o700, uid: uid, gid: gid}, true, "not postgres")
	add("other-cluster", staleDir{mode: 0o700, uid: uid, gid: gid, postmaster: victimPID}, false, "is a postgres serving "+victim.dataDir)
	add("data-symlink", staleDir{mode: 0o700, uid: uid, gid: gid, dataLink: victim.dataDir}, false, "is a symlink")
	add("group-writable", staleDir{mode: 0o770, uid: uid, gid: gid}, true, "writable by group or others")
	link := add("link", staleDir{mode: 0o700, uid: uid, gid: gid}, true, "is a symlink")
	link.link, link.dir.path = link.dir.path, filepath.Join(tmp, "link-target")
	if os.Geteuid() == 0 {
		// Made by another user (nobody), and readable by the postgres user,
		// so that a pg_ctl run as postgres could act on it.
		add("nobody", staleDir{mode: 0o755, uid: 65534, gid: 65534}, true, "owned by uid 65534")
	} else {
		t.Log("not root: cannot make a directory owned by another user; that case is skipped")
	}
	for i := range cases {
		cases[i].dir.make(t, dead)
		if cases[i].link != "" {
			if err := os.Symlink(cases[i].dir.path, cases[i].link); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A cluster left behind whose server is gone (its postmaster.pid is stale):
	// nothing to stop, and removed.
	gone := staleDir{path: filepath.Join(tmp, dirPrefix+"gone"), mode: 0o700, uid: uid, gid: gid, postmaster: deadPID(t)}
	gone.make(t, dead)

	var mu sync.Mutex
	var logs []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	}
	began := time.Now()
	reapStale(ctx, bins, ra, logf)
	t.Logf("reapStale took %s", time.Since(began).Round(time.Millisecond))

	logged := strings.Join(logs, "\n")
	for _, c := range cases {
		found := c.dir.path
		if c.link != "" {
			found = c.link
		}
		if c.sleeper != nil && !c.sleeper.alive() {
			t.Errorf("%s: cleanup killed the unrelated process %d", c.name, c.sleeper.pid)
		}
		if _, err := os.Lstat(found); err != nil {
			t.Errorf("%s: cleanup removed %s: %v", c.name, found, err)
		}
		if _, err := os.Lstat(filepath.Join(c.dir.path, ownerFile)); err != nil {
			t.Errorf("%s: cleanup removed what %s holds: %v", c.name, found, err)
		}
		if !strings.Contains(logged, "leaving "+found+" alone") || !strings.Contains(logged, c.why) {
			t.Errorf("%s: the log does not say that %s was left alone because it %q", c.name, found, c.why)
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
