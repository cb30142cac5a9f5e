//go:build unix

package testbouncer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tasqhq/tasq/internal/testpg"
)

func TestFindBinarySaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBinary([]string{t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y pgbouncer") {
		t.Errorf("findBinary without a binary = %v; want how to install it", err)
	}
}

func TestStartChecksOptions(t *testing.T) {
	ctx := context.Background()
	for _, o := range []Options{{}, {Server: "postgres://u:p@127.0.0.1:1/db", PoolMode: "sometimes"}, {Server: "postgres://u:p@127.0.0.1:1/db", PoolSize: -1}} {
		if b, err := start(ctx, o); err == nil {
			_ = b.Stop()
			t.Errorf("start(%+v) succeeded; want an error", o)
		}
	}
}

// TestStopByPid checks that Stop ends exactly the bouncer's process, as the
// user it should run as, and removes its directory.
func TestStopByPid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := start(ctx, Options{Server: testpg.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = b.Stop()
		}
	}()
	pid := b.Pid()
	if fi, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		uid := int(fi.Sys().(*syscall.Stat_t).Uid)
		ra, err := currentRunAs()
		if err != nil {
			t.Fatal(err)
		}
		want := os.Geteuid()
		if ra != nil {
			want = ra.uid
		}
		if uid != want {
			t.Errorf("pgbouncer runs as uid %d; want %d", uid, want)
		}
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pgbouncer pid %d still exists after Stop (kill -0: %v)", pid, err)
	}
	if _, err := os.Stat(b.dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after Stop (%v)", b.dir, err)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}

func TestRemoveStale(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(owner int) string {
		d, err := os.MkdirTemp("", dirPrefix+"*")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(owner)), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	stale, mine := mk(dead.Process.Pid), mk(os.Getpid())
	open := mk(dead.Process.Pid)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	ra, err := currentRunAs()
	if err != nil {
		t.Fatal(err)
	}
	removeStale(ra)
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("removeStale removed the directory of a live owner: %v", err)
	}
	if _, err := os.Stat(open); err != nil {
		t.Errorf("removeStale removed a directory others may write to: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("removeStale left %s, whose owner (pid %d) is gone", stale, dead.Process.Pid)
	}
}
