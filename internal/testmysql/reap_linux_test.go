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

// TestReapStaleLeavesOthersAlone checks reapStale's wiring of staledir (whose
// own tests cover the directory checks): crafted leftovers whose mysqld.pid
// names a running server of another directory must neither kill it nor be
// removed; a crafted leftover whose server is gone is removed; and a real
// server whose test process died is killed and its directory removed.
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
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	// craft crafts a leftover: owner.pid names a dead process, mysqld.pid
	// names server, and data is a directory or a symlink to dataLink.
	craft := func(path string, server int, dataLink string) string {
		t.Helper()
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{ownerFile: strconv.Itoa(dead.Process.Pid), "mysqld.pid": strconv.Itoa(server) + "\n"} {
			if err := os.WriteFile(filepath.Join(path, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if dataLink != "" {
			err = os.Symlink(dataLink, filepath.Join(path, "data"))
		} else {
			err = os.Mkdir(filepath.Join(path, "data"), 0o700)
		}
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := map[string]string{
		// Its name is a prefix of the victim's directory.
		"is a mariadbd working in " + victimData: craft(victim.dir[:len(victim.dir)-1], victimPID, ""),
		"is a symlink":                           craft(filepath.Join(tmp, dirPrefix+"data-symlink"), victimPID, victim.dataDir()),
	}
	gone := craft(filepath.Join(tmp, dirPrefix+"gone"), dead.Process.Pid, "")

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

	for why, path := range cases {
		if _, err := os.Lstat(filepath.Join(path, ownerFile)); err != nil {
			t.Errorf("cleanup removed %s: %v", path, err)
		}
		if l := logged(); !strings.Contains(l, "testmysql: leaving "+path+" alone") || !strings.Contains(l, why) {
			t.Errorf("the log does not say that %s was left alone because it %q", path, why)
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
	if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover with no server running was not removed (err %v)", err)
	}

	// The victim's test process "dies": its server is now a leftover, which
	// cleanup kills and removes.
	if err := os.WriteFile(filepath.Join(victim.dir, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
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
}
