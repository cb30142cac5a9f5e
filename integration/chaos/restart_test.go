package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/localpg"
	"github.com/tasqhq/tasq/migrations"
)

// testPGRestart restarts PostgreSQL under the workers, alternately with
// `pg_ctl restart -m fast` and `-m immediate` (a crash and its recovery).
// The server shared by the other tests cannot be restarted, so this
// scenario starts a throwaway cluster of its own.
func testPGRestart(t *testing.T) {
	c := startCluster(t)
	r := newRun(t, "restart", c.dsn)
	r.faults.what = "restarts"
	r.startWorkers()
	modes := []string{"fast", "immediate"}
	var took []string
	for began := time.Now(); r.chaosGoesOn(began); {
		r.pause(400*time.Millisecond, 700*time.Millisecond)
		mode := modes[r.faults.count%len(modes)]
		from := r.dbNow()
		t0 := time.Now()
		if err := c.restart(r.ctx, mode); err != nil {
			t.Fatal(err)
		}
		took = append(took, fmt.Sprintf("%s %v", mode, time.Since(t0).Round(time.Millisecond)))
		to := r.dbNow()
		r.faults.count++
		// Claims held across the restart may lose their leases and outcomes;
		// so may claims made just after it, while the pools still hand out
		// dead connections: a lease longer.
		r.faults.windows = append(r.faults.windows, window{from: from, to: to.Add(r.plan.LeaseDuration)})
		c.checkLoopbackOnly(t)
	}
	t.Logf("figures %s: restarts took %s", r.name, strings.Join(took, ", "))
	r.drainAndVerify()
}

// cluster is a throwaway PostgreSQL cluster that this test may restart.
type cluster struct {
	srv     *localpg.Server
	dsn     string // the scenario's database
	dataDir string
	pgCtl   string
	logFile string
}

// startCluster starts a cluster from the local binaries (listening on
// 127.0.0.1 only; stopped when the test ends) with a migrated database.
// It skips the test when no binaries are installed.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := localpg.Start(ctx, localpg.Options{Fast: true})
	if errors.Is(err, localpg.ErrNotInstalled) {
		t.Skipf("restarting PostgreSQL needs a cluster of this test's own, from the local binaries: %v", err)
	}
	if err != nil {
		t.Fatalf("start a throwaway cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop the throwaway cluster: %v", err)
		}
	})
	c := &cluster{srv: srv}
	conn, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatalf("connect to the throwaway cluster: %v", err)
	}
	defer conn.Close(context.Background())
	var bindir string
	if err := conn.QueryRow(ctx, `SELECT current_setting('data_directory'), (SELECT setting FROM pg_config WHERE name = 'BINDIR')`).Scan(&c.dataDir, &bindir); err != nil {
		t.Fatalf("find the cluster's data directory and binaries: %v", err)
	}
	c.pgCtl = filepath.Join(bindir, "pg_ctl")
	// A log of our own beside the data directory, in the cluster's private
	// directory (owned by the server's user, removed by Stop).
	c.logFile = filepath.Join(filepath.Dir(c.dataDir), "restarts.log")
	c.checkLoopbackOnly(t)

	if c.dsn, err = srv.CreateDatabase(ctx, "chaos", ""); err != nil {
		t.Fatal(err)
	}
	// The cluster runs with synchronous_commit=off (localpg's Fast), under
	// which an immediate shutdown may lose commits already acknowledged: a
	// dispatched job could vanish for a reason that is not TasQ's. With it
	// on, each commit reaches the kernel before it is acknowledged, which
	// survives a server crash (fsync=off only risks an OS crash).
	if _, err := conn.Exec(ctx, `ALTER DATABASE chaos SET synchronous_commit = on`); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Up(ctx, c.dsn); err != nil {
		t.Fatalf("migrate the throwaway cluster: %v", err)
	}
	return c
}

// checkLoopbackOnly fails the test unless the server listens on 127.0.0.1 only.
func (c *cluster) checkLoopbackOnly(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.srv.DSN())
	if err != nil {
		t.Fatalf("connect to the throwaway cluster: %v", err)
	}
	defer conn.Close(context.Background())
	var listen string
	if err := conn.QueryRow(ctx, `SHOW listen_addresses`).Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != "127.0.0.1" {
		t.Fatalf("the throwaway cluster listens on %q, want 127.0.0.1 only", listen)
	}
}

// restart runs `pg_ctl restart -m mode` and waits for the server to accept
// connections again. pg_ctl starts the server with the options it was
// started with (postmaster.opts: port, listen address, socket directory).
// When this process is root the tools run as the "postgres" user, as
// localpg runs them.
func (c *cluster) restart(ctx context.Context, mode string) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.pgCtl, "restart", "-D", c.dataDir, "-m", mode, "-w", "-t", "60", "-l", c.logFile)
	cmd.Dir = filepath.Dir(c.dataDir)
	cmd.WaitDelay = 5 * time.Second
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "PG") && !strings.HasPrefix(k, "LC_") && k != "LANG" && k != "HOME" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C", "LANG=C")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("restart as the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = append(cmd.Env, "HOME="+u.HomeDir)
	} else if home, err := os.UserHomeDir(); err == nil {
		cmd.Env = append(cmd.Env, "HOME="+home)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b, _ := os.ReadFile(c.logFile)
		return fmt.Errorf("pg_ctl restart -m %s: %w\n%s\nserver log:\n%s", mode, err, out, tail(string(b), 20))
	}
	return nil
}
