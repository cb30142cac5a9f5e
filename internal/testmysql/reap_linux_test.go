//go:build linux

package testmysql

import (
	"context"
	"database/sql"
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

	gomysql "github.com/go-sql-driver/mysql"
)

// decoy is an unrelated live process, started by the test and killed when it
// ends: `tail -f` of a file in a crafted directory, so that its command line
// names that directory, as a person watching a server's log would.
type decoy struct {
	pid  int
	done chan struct{} // closed when it has exited and been waited for
}

func startDecoy(t *testing.T, file string) decoy {
	t.Helper()
	cmd := exec.Command("tail", "-f", file)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tail: %v", err)
	}
	d := decoy{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-d.done })
	return d
}

// alive reports whether the decoy still runs (not exited, not a zombie).
func (d decoy) alive() bool {
	select {
	case <-d.done:
		return false
	default:
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(d.pid) + "/stat")
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

// staleCase is a crafted directory that looks like a server's directory left
// behind (its owner.pid names a dead process) but must be left alone.
type staleCase struct {
	name     string
	path     string      // the directory made
	found    string      // what reapStale's glob finds: path, or a symlink to it
	mode     os.FileMode // of path and data/
	uid      int         // owner of everything; -1 keeps the test's
	server   int         // the pid in mysqld.pid; 0: a decoy's
	dataLink string      // when set, data is a symlink to this directory
	decoy    *decoy
	why      string // what the log must say
}

func (c *staleCase) make(t *testing.T, owner int) {
	t.Helper()
	chown := func(p string) {
		if c.uid >= 0 {
			if err := os.Lchown(p, c.uid, c.uid); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkdir := func(p string) {
		if err := os.Mkdir(p, c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		chown(p)
	}
	write := func(name, content string) {
		p := filepath.Join(c.path, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		chown(p)
	}
	mkdir(c.path)
	if c.found != c.path {
		if err := os.Symlink(c.path, c.found); err != nil {
			t.Fatal(err)
		}
	}
	write(ownerFile, strconv.Itoa(owner))
	write("error.log", "")
	if c.dataLink != "" {
		if err := os.Symlink(c.dataLink, filepath.Join(c.path, "data")); err != nil {
			t.Fatal(err)
		}
		chown(filepath.Join(c.path, "data"))
	} else {
		mkdir(filepath.Join(c.path, "data"))
	}
	if c.server == 0 {
		d := startDecoy(t, filepath.Join(c.found, "error.log"))
		c.decoy, c.server = &d, d.pid
	}
	write("mysqld.pid", strconv.Itoa(c.server)+"\n")
}

// TestReapStaleLeavesOthersAlone crafts directories that look like servers'
// directories left behind but are not certain to be this package's, each
// naming a live process in its mysqld.pid: cleanup must neither kill that
// process nor remove the directory. A crafted leftover whose server is gone
// is removed, and a real server whose test process died is killed and its
// directory removed.
func TestReapStaleLeavesOthersAlone(t *testing.T) {
	tmp, err := os.MkdirTemp("", "testmysql-reap-") // short: the server's socket lives under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A real server of this process, in the same temporary directory.
	victim, err := startLocal(ctx, t.Logf)
	if err != nil {
		t.Fatalf("MariaDB binaries are required for this test: %v", err)
	}
	t.Cleanup(func() {
		if err := victim.stop(); err != nil {
			t.Error(err)
		}
	})
	victimPID := victim.cmd.Process.Pid
	victimData, err := filepath.EvalSymlinks(victim.dataDir())
	if err != nil {
		t.Fatal(err)
	}

	dead := deadPID(t)
	var cases []*staleCase
	add := func(c staleCase) *staleCase {
		if c.path == "" {
			c.path = filepath.Join(tmp, dirPrefix+c.name)
		}
		if c.found == "" {
			c.found = c.path
		}
		if c.mode == 0 {
			c.mode = 0o700
		}
		cases = append(cases, &c)
		return &c
	}
	add(staleCase{name: "unrelated", uid: -1, why: "/tail, not mariadbd"})
	// Its name is a prefix of the victim's directory, so the victim's command
	// line contains it.
	add(staleCase{name: "other-server", path: victim.dir[:len(victim.dir)-1], uid: -1, server: victimPID,
		why: "is a mariadbd working in " + victimData})
	add(staleCase{name: "data-symlink", uid: -1, server: victimPID, dataLink: victim.dataDir(), why: "is a symlink"})
	add(staleCase{name: "group-writable", mode: 0o770, uid: -1, why: "writable by group or others"})
	add(staleCase{name: "link", path: filepath.Join(tmp, "link-target"), found: filepath.Join(tmp, dirPrefix+"link"), uid: -1,
		why: "is a symlink"})
	if os.Geteuid() == 0 {
		add(staleCase{name: "nobody", mode: 0o755, uid: 65534, why: "owned by uid 65534"})
	} else {
		t.Log("not root: cannot make a directory owned by another user; that case is skipped")
	}
	for _, c := range cases {
		c.make(t, dead)
	}
	// A leftover whose server is gone: nothing to kill, and removed.
	gone := add(staleCase{name: "gone", uid: -1, server: deadPID(t)})
	cases = cases[:len(cases)-1]
	gone.make(t, dead)

	var mu sync.Mutex
	var logs []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	}
	logged := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(logs, "\n")
	}

	reapStale(logf)

	for _, c := range cases {
		if c.decoy != nil && !c.decoy.alive() {
			t.Errorf("%s: cleanup killed the unrelated process %d", c.name, c.decoy.pid)
		}
		if _, err := os.Lstat(c.found); err != nil {
			t.Errorf("%s: cleanup removed %s: %v", c.name, c.found, err)
		}
		if _, err := os.Lstat(filepath.Join(c.path, ownerFile)); err != nil {
			t.Errorf("%s: cleanup removed what %s holds: %v", c.name, c.found, err)
		}
		if l := logged(); !strings.Contains(l, "leaving "+c.found+" alone") || !strings.Contains(l, c.why) {
			t.Errorf("%s: the log does not say that %s was left alone because it %q", c.name, c.found, c.why)
		}
	}
	select {
	case <-victim.exited:
		t.Fatalf("cleanup stopped the running server (%v)", victim.waitErr)
	default:
	}
	conn, err := gomysql.NewConnector(victim.config())
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		t.Errorf("the running server does not answer: %v", err)
	}
	if _, err := os.Stat(victim.dir); err != nil {
		t.Errorf("the running server's directory: %v", err)
	}
	if _, err := os.Lstat(gone.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover with no server running was not removed (err %v)", err)
	}

	// The victim's test process "dies": its server is now a leftover, which
	// cleanup kills and removes; the decoys still live.
	if err := os.WriteFile(filepath.Join(victim.dir, ownerFile), []byte(strconv.Itoa(dead)), 0o644); err != nil {
		t.Fatal(err)
	}
	reapStale(logf)
	select {
	case <-victim.exited:
	case <-ctx.Done():
		t.Fatalf("cleanup did not stop the server (pid %d) left behind in %s", victimPID, victim.dir)
	}
	if l := logged(); !strings.Contains(l, fmt.Sprintf("killing mariadbd %d", victimPID)) {
		t.Errorf("the log does not say that mariadbd %d was killed", victimPID)
	}
	if _, err := os.Lstat(victim.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory of the killed server was not removed (err %v)", err)
	}
	for _, c := range cases {
		if c.decoy != nil && !c.decoy.alive() {
			t.Errorf("%s: the second cleanup killed the unrelated process %d", c.name, c.decoy.pid)
		}
	}
}
