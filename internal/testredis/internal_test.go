//go:build unix

package testredis

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFindServerSaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findServer([]string{t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y redis-server") || !strings.Contains(err.Error(), EnvRedisURL) {
		t.Errorf("findServer without a binary = %v; want how to install one or set %s", err, EnvRedisURL)
	}
}

// TestStartAndStopByPid starts a second server, checks how it runs, and
// checks that stop ends exactly that process and removes its directory.
func TestStartAndStopByPid(t *testing.T) {
	bin, err := findServer(serverDirs())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := startServer(ctx, bin, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = s.stop()
		}
	}()
	if !strings.HasPrefix(s.url, "redis://127.0.0.1:") {
		t.Errorf("server URL %s is not on 127.0.0.1", s.url)
	}
	h, err := newHarness(ctx, "test", s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for param, want := range map[string]string{"bind": "127.0.0.1", "save": "", "appendonly": "no"} {
		got, err := h.admin.ConfigGet(ctx, param).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got[param] != want {
			t.Errorf("CONFIG GET %s = %q; want %q", param, got[param], want)
		}
	}
	_ = h.close()

	pid := s.cmd.Process.Pid
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("redis-server pid %d still exists after stop (kill -0: %v)", pid, err)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after stop (%v)", s.dir, err)
	}
	if err := s.stop(); err != nil {
		t.Errorf("a second stop: %v", err)
	}
}

// TestRemoveStale checks removeStale's wiring of staledir (whose own tests
// cover the directory checks): the directory of a dead test binary goes, that
// of a live one stays, and one that others may write to stays and is logged.
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
	stale, mine, open := mk(dead.Process.Pid), mk(os.Getpid()), mk(dead.Process.Pid)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	removeStale(slog.New(slog.NewTextHandler(&logs, nil)))
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("removeStale removed the directory of a live owner: %v", err)
	}
	if _, err := os.Stat(open); err != nil {
		t.Errorf("removeStale removed a directory others may write to: %v", err)
	}
	if !diesWithParent {
		return
	}
	if !strings.Contains(logs.String(), "leaving "+open+" alone") || !strings.Contains(logs.String(), "writable by group or others") {
		t.Errorf("the log does not say why %s was left alone:\n%s", open, logs.String())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("removeStale left %s, whose owner (pid %d) is gone", stale, dead.Process.Pid)
	}
}
