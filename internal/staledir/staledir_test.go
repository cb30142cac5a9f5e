//go:build unix

package staledir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// mkdir makes dir with exactly mode, whatever the umask.
func mkdir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckDir(t *testing.T) {
	tmp := t.TempDir()
	ok := mkdir(t, filepath.Join(tmp, "ok"), 0o700)
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{ // path: what the error must say; "" for none
		ok:   "",
		link: "is a symlink",
		mkdir(t, filepath.Join(tmp, "group"), 0o770): "writable by group or others",
		mkdir(t, filepath.Join(tmp, "other"), 0o757): "writable by group or others",
		write(t, filepath.Join(tmp, "file"), ""):     "is not a directory",
	}
	var c Config
	if os.Geteuid() == 0 {
		nobody := mkdir(t, filepath.Join(tmp, "nobody"), 0o755)
		if err := os.Chown(nobody, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases[nobody] = "owned by uid 65534, not 0"
		if err := (&Config{Owners: []int{65534}}).CheckDir(nobody); err != nil {
			t.Errorf("CheckDir(%s) with uid 65534 allowed: %v", nobody, err)
		}
	} else {
		t.Log("not root: cannot make a directory owned by another user; that case is skipped")
	}
	for path, want := range cases {
		err := c.CheckDir(path)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckDir(%s) = %v; want %q", path, err, want)
		}
	}
	if err := c.CheckDir(filepath.Join(tmp, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CheckDir of a missing directory = %v; want ErrNotExist", err)
	}
}

func TestReadPIDFile(t *testing.T) {
	tmp := t.TempDir()
	good := write(t, filepath.Join(tmp, "good"), "123\n/some/dir\n")
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{ // path: the pid, or what the error must say
		good: "123",
		write(t, filepath.Join(tmp, "spaces"), " 7 "):                          "7",
		write(t, filepath.Join(tmp, "zero"), "0\n"):                            "does not start with a pid",
		write(t, filepath.Join(tmp, "words"), "pid 12\n"):                      "does not start with a pid",
		write(t, filepath.Join(tmp, "huge"), strings.Repeat(" ", 4096)+"42\n"): "does not start with a pid",
		link: "is not a regular file",
		mkdir(t, filepath.Join(tmp, "dir"), 0o700): "is not a regular file",
	}
	for path, want := range cases {
		pid, err := ReadPIDFile(path)
		got := strconv.Itoa(pid)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("ReadPIDFile(%s) = %d, %v; want %s", path, pid, err, want)
		}
	}
	if _, err := ReadPIDFile(filepath.Join(tmp, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadPIDFile of a missing file = %v; want ErrNotExist", err)
	}
}

func TestProcessAlive(t *testing.T) {
	if !ProcessAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if !ProcessAlive(1) {
		t.Error("init (pid 1) is not alive") // EPERM when not root: still alive
	}
	if pid := deadPID(t); ProcessAlive(pid) {
		t.Errorf("process %d, which has exited, is alive", pid)
	}
}

// TestReap crafts directories under the prefix: only those whose owner is
// gone and that are certain to be the harness's are removed, after Stop; the
// others are left alone, and logged when they are not certain to be its.
func TestReap(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	const prefix = "tasq-staledir-test-"
	dead := strconv.Itoa(deadPID(t))
	in := func(name string) string { return filepath.Join(tmp, prefix+name) }
	leftover := func(name, owner string) string {
		d := mkdir(t, in(name), 0o700)
		if owner != "" {
			write(t, filepath.Join(d, "owner.pid"), owner)
		}
		return d
	}
	gone := leftover("gone", dead)
	stopFails := leftover("stop-fails", dead)
	keep := map[string]string{ // what is left, and what the log must say ("" for nothing)
		leftover("mine", strconv.Itoa(os.Getpid())): "",
		leftover("no-owner", ""):                    "",
		leftover("garbage", "x"):                    "",
		stopFails:                                   "cannot stop it",
		write(t, in("file"), dead):                  "is not a directory",
		filepath.Join(tmp, "other-prefix"):          "",
	}
	mkdir(t, filepath.Join(tmp, "other-prefix"), 0o700)
	write(t, filepath.Join(tmp, "other-prefix", "owner.pid"), dead)
	open := leftover("open", dead)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	keep[open] = "writable by group or others"
	target := mkdir(t, filepath.Join(tmp, "link-target"), 0o700)
	write(t, filepath.Join(target, "owner.pid"), dead)
	if err := os.Symlink(target, in("link")); err != nil {
		t.Fatal(err)
	}
	keep[in("link")] = "is a symlink"

	var logs []string
	stopped := map[string]int{}
	Reap(Config{
		Prefix: prefix,
		Stop: func(l Leftover) error {
			stopped[l.Dir] = l.Owner
			if l.Dir == stopFails {
				return errors.New("cannot stop it")
			}
			return nil
		},
		Logf: func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) },
	})
	logged := strings.Join(logs, "\n")
	t.Logf("Reap logged:\n%s", logged)

	if _, err := os.Lstat(gone); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Reap left %s, whose owner is gone (err %v)", gone, err)
	}
	if !strings.Contains(logged, "removing "+gone+" left behind by process "+dead) {
		t.Errorf("the log does not say that %s was removed", gone)
	}
	if strconv.Itoa(stopped[gone]) != dead || strconv.Itoa(stopped[stopFails]) != dead || len(stopped) != 2 {
		t.Errorf("Stop was called for %v; want %s and %s, owner %s", stopped, gone, stopFails, dead)
	}
	for path, why := range keep {
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("Reap removed %s: %v", path, err)
		}
		if mentioned := strings.Contains(logged, path+" "); why == "" && mentioned {
			t.Errorf("the log mentions %s, which is not left behind", path)
		} else if why != "" && (!strings.Contains(logged, "leaving "+path+" alone") || !strings.Contains(logged, why)) {
			t.Errorf("the log does not say that %s was left alone because it %q", path, why)
		}
	}
	if _, err := os.Lstat(filepath.Join(target, "owner.pid")); err != nil {
		t.Errorf("Reap removed what the symlink %s points to: %v", in("link"), err)
	}
}
