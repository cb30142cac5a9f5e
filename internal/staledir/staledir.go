// Package staledir finds and removes the temporary directories that the test
// and dev harnesses of internal/ (localpg, testmysql, testredis, testbouncer)
// leave behind when the process that made one dies without cleaning up.
//
// Each harness makes its directories as os.TempDir()/PREFIX* and writes the
// pid of the process that made it into an owner file inside. Reap removes
// such a directory once that process is gone, but only when it is certain to
// be one the harness could have made: a real directory (not a symlink), owned
// by the current user or another allowed uid, and writable by nobody else, so
// that nobody else can have put or changed what is in it. A server still
// running in it is stopped only after Linux's /proc shows that the process its
// pid file names runs one of the harness's server programs with its working
// directory in that very directory (see Leftover.Server), so a stray or reused
// pid, or another directory's server, is never signalled.
package staledir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Config describes one harness's directories and what to do with those left
// behind.
type Config struct {
	// Prefix names the harness's directories: os.TempDir()/Prefix*.
	Prefix string
	// OwnerFile, inside a directory, holds the pid of the process that made
	// it; "" means "owner.pid".
	OwnerFile string
	// Owners are the uids, besides the effective one, that may own a
	// directory, e.g. the user servers run as when the process is root.
	Owners []int
	// Exes are the base names of the programs a server left in a directory
	// may run, e.g. "postgres" (see Leftover.Server); the first names it in
	// messages.
	Exes []string
	// Stop, when set, is called for every directory left behind before it is
	// removed, to stop what still runs there. An error leaves the directory
	// alone, and is logged.
	Stop func(Leftover) error
	// Logf, when set, receives one line for every directory removed or left
	// alone, and why.
	Logf func(format string, args ...any)
}

// Leftover is a directory whose owner process is gone.
type Leftover struct {
	Dir   string
	Owner int // the pid in its owner file, of a process that no longer exists
	c     *Config
}

// ErrNotStale says that a directory is not one left behind: it has no owner
// file (not the harness's, or one still being made) or its owner lives.
var ErrNotStale = errors.New("not left behind")

// Reap removes the directories of c.Prefix left behind, after c.Stop, when
// set, has stopped what runs in them. A directory that is not certain to be
// the harness's is left alone, and logged; one whose owner lives is skipped
// silently.
func Reap(c Config) {
	logf := c.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), c.Prefix+"*"))
	for _, dir := range dirs {
		l, err := c.Inspect(dir)
		if errors.Is(err, ErrNotStale) {
			continue
		}
		if err == nil && c.Stop != nil {
			err = c.Stop(l)
		}
		if err != nil {
			logf("leaving %s alone: %v", dir, err)
			continue
		}
		logf("removing %s left behind by process %d", dir, l.Owner)
		if err := os.RemoveAll(dir); err != nil {
			logf("remove %s: %v", dir, err)
		}
	}
}

// Inspect decides whether dir is a directory left behind. It returns an error
// wrapping ErrNotStale for one that is not, and another error, saying why, for
// one that must be left alone because it is not certain to be the harness's
// (see CheckDir).
func (c *Config) Inspect(dir string) (Leftover, error) {
	if err := c.CheckDir(dir); err != nil {
		return Leftover{}, err
	}
	name := c.OwnerFile
	if name == "" {
		name = "owner.pid"
	}
	owner, err := ReadPIDFile(filepath.Join(dir, name))
	if err != nil {
		return Leftover{}, fmt.Errorf("%w: %w", ErrNotStale, err)
	}
	if owner == os.Getpid() || ProcessAlive(owner) {
		return Leftover{}, fmt.Errorf("%w: its owner, process %d, is alive", ErrNotStale, owner)
	}
	return Leftover{Dir: dir, Owner: owner, c: c}, nil
}

// CheckDir returns an error unless path is a directory, not a symlink, owned
// by the effective user or one of c.Owners, and not writable by group or
// others: one that nobody else can have made or filled.
func (c *Config) CheckDir(path string) error {
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
	allowed := append([]int{os.Geteuid()}, c.Owners...)
	if !slices.Contains(allowed, uid) {
		want := make([]string, len(allowed))
		for i, u := range allowed {
			want[i] = strconv.Itoa(u)
		}
		return fmt.Errorf("%s is owned by uid %d, not %s", path, uid, strings.Join(want, " or "))
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %v)", path, perm)
	}
	return nil
}

// Server returns the server process still running in the directory left
// behind, or nil when none runs: pidFile (relative to l.Dir, in a directory
// that CheckDir accepts) names it, and it must run one of the programs of
// Config.Exes with workDir (relative to l.Dir, accepted by CheckDir too) as its
// working directory. It returns an error, saying why, when the pid file names
// a live process that is not certain to be that server. A missing pid file, or
// one whose process is gone, means no server.
//
// The process is found by pid before it is checked; on Linux it is then held
// by a pidfd, so a signal sent to it reaches that process or none, even if it
// exits and its pid is reused meanwhile. The caller must Release it.
func (l Leftover) Server(pidFile, workDir string) (*os.Process, error) {
	pidFile, workDir = filepath.Join(l.Dir, pidFile), filepath.Join(l.Dir, workDir)
	if err := l.c.CheckDir(filepath.Dir(pidFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil // never made
	} else if err != nil {
		return nil, err
	}
	pid, err := ReadPIDFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // never started, or stopped
	}
	if err != nil {
		return nil, err
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("find process %d: %w", pid, err)
	}
	if err := p.Signal(syscall.Signal(0)); errors.Is(err, os.ErrProcessDone) {
		return nil, nil // the server is gone; its pid file is stale
	}
	err = l.c.CheckDir(workDir)
	if err == nil {
		// l.Dir and workDir are no symlinks, so this resolves only
		// os.TempDir()'s path, the way the kernel reports a working directory.
		var real string
		if real, err = filepath.EvalSymlinks(workDir); err == nil {
			err = VerifyProcess(pid, real, l.c.Exes...)
		}
	}
	if err != nil {
		_ = p.Release()
		return nil, fmt.Errorf("its %s names process %d, which is not its server: %w", filepath.Base(pidFile), pid, err)
	}
	return p, nil
}

// ReadPIDFile returns the positive pid on the first line of the regular file
// (not a symlink) at path, reading at most 4 KiB of it.
func ReadPIDFile(path string) (int, error) {
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
