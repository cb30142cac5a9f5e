package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tasqhq/tasq/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// README's first example runs as written: it migrates an empty database,
// runs its job, and stops cleanly on Ctrl-C (SIGINT).
func TestQuickstartRunsAndStopsOnCtrlC(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "quickstart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "TASQ_DATABASE_URL="+testpg.NewEmptyDatabase(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for ran := false; !ran; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("quickstart exited before running its job")
			}
			ran = strings.Contains(l, "Notification: Hello, World!")
		case <-deadline:
			t.Fatal("quickstart did not run its job within 60s")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("quickstart after Ctrl-C: %v, want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("quickstart did not stop within 30s of Ctrl-C")
	}
}
