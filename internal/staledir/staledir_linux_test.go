//go:build linux

package staledir

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sleeper is an unrelated live process, started by the test in dir and
// killed when it ends.
type sleeper struct {
	pid  int
	done chan struct{} // closed when it has exited and been waited for
}

func startSleeper(t *testing.T, dir string) sleeper {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.Dir = dir
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

// sleepExe is the base name of the program `sleep` runs, as /proc shows it.
func sleepExe(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sleep")
	if err == nil {
		p, err = filepath.EvalSymlinks(p)
	}
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(p)
}

// TestServer crafts leftovers whose pid file names processes: only a process
// that runs one of Exes in the leftover's very working directory is its
// server.
func TestServer(t *testing.T) {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	exe := sleepExe(t)
	dead := strconv.Itoa(deadPID(t))
	// leftover makes a directory left behind, with work/ and, unless pid is
	// "", run/srv.pid holding pid.
	leftover := func(name, pid string, runMode os.FileMode) Leftover {
		t.Helper()
		d := mkdir(t, filepath.Join(tmp, name), 0o700)
		write(t, filepath.Join(d, "owner.pid"), dead)
		mkdir(t, filepath.Join(d, "work"), 0o700)
		if pid != "" {
			mkdir(t, filepath.Join(d, "run"), runMode)
			write(t, filepath.Join(d, "run", "srv.pid"), pid+"\n")
		}
		l, err := (&Config{Exes: []string{exe}}).Inspect(d)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	pidOf := func(sl sleeper) string { return strconv.Itoa(sl.pid) }

	mine := leftover("mine", "", 0)
	server := startSleeper(t, filepath.Join(mine.Dir, "work"))
	mkdir(t, filepath.Join(mine.Dir, "run"), 0o700)
	write(t, filepath.Join(mine.Dir, "run", "srv.pid"), pidOf(server))
	p, err := mine.Server("run/srv.pid", "work")
	if err != nil || p == nil || p.Pid != server.pid {
		t.Fatalf("Server of its own sleeper = %v, %v; want process %d", p, err, server.pid)
	}
	_ = p.Release()

	elsewhere := startSleeper(t, tmp)
	linked := leftover("linked", pidOf(server), 0o700)
	if err := os.Remove(filepath.Join(linked.Dir, "work")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(mine.Dir, "work"), filepath.Join(linked.Dir, "work")); err != nil {
		t.Fatal(err)
	}
	notServer := map[string]Leftover{ // what the error must say
		"is a " + exe + " working in " + tmp:      leftover("elsewhere", pidOf(elsewhere), 0o700),
		"is a " + exe + " working in " + mine.Dir: leftover("other-dir", pidOf(server), 0o700),
		"is a symlink":                linked,
		"writable by group or others": leftover("open-run", pidOf(server), 0o770),
	}
	for why, l := range notServer {
		if p, err := l.Server("run/srv.pid", "work"); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("Server of %s = %v, %v; want an error saying it %q", l.Dir, p, err, why)
		}
	}
	other := leftover("other-exe", pidOf(server), 0o700)
	other.c = &Config{Exes: []string{"postgres", "postmaster"}}
	if _, err := other.Server("run/srv.pid", "work"); err == nil || !strings.Contains(err.Error(), exe+", not postgres") {
		t.Errorf("Server with other Exes = %v; want an error saying it runs %s, not postgres", err, exe)
	}
	for _, l := range []Leftover{leftover("no-pid-file", "", 0), leftover("gone", dead, 0o700)} {
		if p, err := l.Server("run/srv.pid", "work"); p != nil || err != nil {
			t.Errorf("Server of %s = %v, %v; want none", l.Dir, p, err)
		}
	}
	if !server.alive() || !elsewhere.alive() {
		t.Error("Server signalled a process to death")
	}
}

// TestReapStopsServer wires Reap, Server and a kill together, as the
// harnesses do: the server of a directory left behind is killed and the
// directory removed; an unrelated process its pid file names elsewhere lives.
func TestReapStopsServer(t *testing.T) {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	const prefix = "tasq-staledir-test-"
	dead := strconv.Itoa(deadPID(t))
	var sleepers []sleeper
	for _, name := range []string{"server", "decoy"} {
		d := mkdir(t, filepath.Join(tmp, prefix+name), 0o700)
		write(t, filepath.Join(d, "owner.pid"), dead)
		work := mkdir(t, filepath.Join(d, "work"), 0o700)
		if name == "decoy" {
			work = tmp
		}
		sl := startSleeper(t, work)
		write(t, filepath.Join(d, "srv.pid"), strconv.Itoa(sl.pid))
		sleepers = append(sleepers, sl)
	}
	server, decoy := sleepers[0], sleepers[1]
	Reap(Config{
		Prefix: prefix,
		Exes:   []string{sleepExe(t)},
		Logf:   t.Logf,
		Stop: func(l Leftover) error {
			p, err := l.Server("srv.pid", "work")
			if err != nil || p == nil {
				return err
			}
			defer p.Release()
			if err := p.Kill(); err != nil {
				return err
			}
			select {
			case <-server.done:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("the server survived SIGKILL")
			}
		},
	})
	if server.alive() {
		t.Errorf("the server (pid %d) of the directory left behind still runs", server.pid)
	}
	if _, err := os.Lstat(filepath.Join(tmp, prefix+"server")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory of the killed server was not removed (err %v)", err)
	}
	if !decoy.alive() {
		t.Errorf("Reap killed the unrelated process %d", decoy.pid)
	}
	if _, err := os.Lstat(filepath.Join(tmp, prefix+"decoy")); err != nil {
		t.Errorf("Reap removed the directory naming an unrelated process: %v", err)
	}
}
