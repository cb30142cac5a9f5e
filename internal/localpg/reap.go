package localpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// reapStale stops and removes clusters left behind by processes that died
// without calling Stop. Before it stops or removes anything it makes sure the
// directory is one this package could have made (see inspectStale); anything
// else is left alone. Failures and skipped directories are only reported
// through logf.
func reapStale(ctx context.Context, bins binaries, ra *runAs, logf func(string, ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		c, err := inspectStale(dir, ra)
		if errors.Is(err, errNotStale) {
			continue
		}
		if err != nil {
			logf("localpg: leaving %s alone: %v", dir, err)
			continue
		}
		if c.postmaster != 0 {
			logf("localpg: stopping PostgreSQL (pid %d) of cluster %s left behind by process %d", c.postmaster, dir, c.owner)
			if err := stopCluster(ctx, bins, ra, c.dataDir, "immediate"); err != nil {
				logf("localpg: %v", err)
				continue
			}
		}
		logf("localpg: removing cluster %s left behind by process %d", dir, c.owner)
		if err := os.RemoveAll(dir); err != nil {
			logf("localpg: remove %s: %v", dir, err)
		}
	}
}

// errNotStale says that a directory is not a cluster left behind: it has no
// owner file (not a cluster, or one still being created) or its owner lives.
var errNotStale = errors.New("not a cluster left behind")

// staleCluster is a cluster directory that reapStale may stop and remove.
type staleCluster struct {
	dataDir    string
	owner      int // the pid in owner.pid, of a process that no longer exists
	postmaster int // pid of its running server, verified; 0 when none runs
}

// inspectStale decides whether dir is a cluster left behind that reapStale may
// remove, and whether a server of it still runs. It returns an error wrapping
// errNotStale for a directory that is not a cluster left behind, and another
// error, saying why, for one that must be left alone because it is not certain
// to be this package's cluster:
//
//   - dir and its data directory must be real directories (not symlinks),
//     owned by the current user (or, when running as root, by root or the user
//     the servers run as) and writable by nobody else, so that nobody else can
//     have put or changed what is in them;
//   - a server is stopped only when the process that data/postmaster.pid names
//     is a postgres whose working directory is that very data directory (the
//     postmaster changes into its data directory), so a stray or reused pid,
//     or another cluster's server, is never signalled.
func inspectStale(dir string, ra *runAs) (staleCluster, error) {
	if err := checkPrivateDir(dir, ra); err != nil {
		return staleCluster{}, err
	}
	owner, err := readPIDFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return staleCluster{}, fmt.Errorf("%w: %w", errNotStale, err)
	}
	if processAlive(owner) {
		return staleCluster{}, fmt.Errorf("%w: its owner, process %d, is alive", errNotStale, owner)
	}
	c := staleCluster{dataDir: filepath.Join(dir, "data"), owner: owner}
	if _, err := os.Lstat(c.dataDir); errors.Is(err, fs.ErrNotExist) {
		return c, nil // initdb never ran
	}
	if err := checkPrivateDir(c.dataDir, ra); err != nil {
		return staleCluster{}, err
	}
	pm, err := readPIDFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil // never started, or stopped
	}
	if err != nil {
		return staleCluster{}, err
	}
	if !processAlive(pm) {
		return c, nil // the server is gone; its pid file is stale
	}
	// dir and dataDir are no symlinks, so this resolves only os.TempDir()'s
	// path, the way the kernel reports the server's working directory.
	real, err := filepath.EvalSymlinks(c.dataDir)
	if err != nil {
		return staleCluster{}, fmt.Errorf("resolve %s: %w", c.dataDir, err)
	}
	if err := verifyPostmaster(pm, real); err != nil {
		return staleCluster{}, fmt.Errorf("its postmaster.pid names process %d, which is not its server: %w", pm, err)
	}
	c.postmaster = pm
	return c, nil
}

// checkPrivateDir returns an error unless path is a directory, not a symlink,
// owned by the current user or by ra's user, and not writable by group or
// others.
func checkPrivateDir(path string, ra *runAs) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink", path)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	uid, ok := fileOwner(fi)
	if !ok {
		return fmt.Errorf("cannot tell who owns %s", path)
	}
	if uid != os.Geteuid() && (ra == nil || uid != ra.uid) {
		want := fmt.Sprintf("uid %d", os.Geteuid())
		if ra != nil {
			want += fmt.Sprintf(" or %d (%s)", ra.uid, ra.name)
		}
		return fmt.Errorf("%s is owned by uid %d, not %s", path, uid, want)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %v)", path, perm)
	}
	return nil
}

// readPIDFile returns the positive pid on the first line of the regular file
// at path (not a symlink).
func readPIDFile(path string) (int, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not start with a pid", path)
	}
	return pid, nil
}
