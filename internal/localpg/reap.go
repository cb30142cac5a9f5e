package localpg

import (
	"context"
	"path/filepath"

	"github.com/tasqhq/tasq/internal/staledir"
)

// reapStale stops and removes clusters left behind by processes that died
// without calling Stop. It touches only directories this package could have
// made (see staledir): owned by the current user (or, when running as root,
// by root or the user the servers run as), no symlinks, writable by nobody
// else. A server is stopped only when the process that data/postmaster.pid
// names is a postgres whose working directory is that very data directory
// (the postmaster changes into its data directory), so a stray or reused pid,
// or another cluster's server, is never signalled. Failures and skipped
// directories are only reported through logf.
func reapStale(ctx context.Context, bins binaries, ra *runAs, logf func(string, ...any)) {
	c := staledir.Config{
		Prefix:    dirPrefix,
		OwnerFile: ownerFile,
		Exes:      []string{"postgres", "postmaster"},
		Logf:      func(format string, args ...any) { logf("localpg: "+format, args...) },
		Stop: func(l staledir.Leftover) error {
			pm, err := l.Server("data/postmaster.pid", "data")
			if err != nil || pm == nil {
				return err
			}
			_ = pm.Release() // pg_ctl signals it
			logf("localpg: stopping PostgreSQL (pid %d) of cluster %s left behind by process %d", pm.Pid, l.Dir, l.Owner)
			return stopCluster(ctx, bins, ra, filepath.Join(l.Dir, "data"), "immediate")
		},
	}
	if ra != nil {
		c.Owners = []int{ra.uid}
	}
	staledir.Reap(c)
}
