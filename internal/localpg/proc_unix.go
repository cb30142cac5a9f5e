//go:build unix

package localpg

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is the OS user the server tools run as when the process is root.
type runAs struct {
	name     string
	uid, gid int
	home     string
}

// currentRunAs returns nil when the tools can run as the current user, and the
// "postgres" user when the process is root (PostgreSQL refuses to run as root).
func currentRunAs() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("localpg: running as root, so the server must run as the \"postgres\" OS user, but looking it up failed: %w; "+
			"create it (`useradd --system --home-dir /var/lib/postgresql postgres`) or install the postgresql package, which creates it", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("localpg: user postgres has a non-numeric uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("localpg: user postgres has a non-numeric gid %q: %w", u.Gid, err)
	}
	home := u.HomeDir
	if home == "" {
		home = "/"
	}
	return &runAs{name: u.Username, uid: uid, gid: gid, home: home}, nil
}

// apply makes cmd run as ra's user; a nil ra leaves cmd unchanged.
func (ra *runAs) apply(cmd *exec.Cmd) {
	if ra == nil {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(ra.uid), Gid: uint32(ra.gid)},
	}
}
