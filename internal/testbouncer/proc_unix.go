//go:build unix

package testbouncer

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is the OS user pgbouncer runs as when the tests run as root.
type runAs struct {
	name     string
	uid, gid int
	home     string
}

// currentRunAs returns nil when pgbouncer can run as the current user, and
// the "postgres" user when the process is root (PgBouncer refuses to run as
// root).
func currentRunAs() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, so pgbouncer must run as the \"postgres\" OS user, but looking it up failed: %w; "+
			"create it (`useradd --system --home-dir /var/lib/postgresql postgres`) or install the postgresql package, which creates it", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric gid %q: %w", u.Gid, err)
	}
	home := u.HomeDir
	if home == "" {
		home = "/"
	}
	return &runAs{name: u.Username, uid: uid, gid: gid, home: home}, nil
}

// credential makes a process run as ra's user; nil for a nil ra.
func (ra *runAs) credential() *syscall.Credential {
	if ra == nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(ra.uid), Gid: uint32(ra.gid)}
}
