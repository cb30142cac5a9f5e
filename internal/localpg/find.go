package localpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// binaries are the absolute paths of the server tools, taken from one installation.
type binaries struct {
	initdb string
	pgCtl  string
}

// searchPath says where findBinaries looks; its zero value is unusable, nil
// means the defaults.
type searchPath struct {
	path    string // a PATH-style list of directories
	libGlob string // a glob of version directories' bin/, e.g. /usr/lib/postgresql/*/bin
}

func defaultSearch() *searchPath {
	return &searchPath{path: os.Getenv("PATH"), libGlob: "/usr/lib/postgresql/*/bin"}
}

// findBinaries looks for initdb and pg_ctl first on PATH, then in the highest
// versioned directory matching the library glob. Both tools must come from the
// same installation, because pg_ctl and initdb find the postgres binary beside
// their own (symlinks resolved).
func findBinaries(sp *searchPath) (binaries, error) {
	if sp == nil {
		sp = defaultSearch()
	}
	var candidates []string
	for _, dir := range filepath.SplitList(sp.path) {
		if dir == "" {
			continue
		}
		if p := executable(filepath.Join(dir, "initdb")); p != "" {
			// Resolve symlinks so that pg_ctl is taken from the real installation.
			if real, err := filepath.EvalSymlinks(p); err == nil {
				candidates = append(candidates, filepath.Dir(real))
			}
			candidates = append(candidates, dir)
			break
		}
	}
	dirs, _ := filepath.Glob(sp.libGlob)
	sortByVersionDesc(dirs)
	candidates = append(candidates, dirs...)

	for _, dir := range candidates {
		initdb := executable(filepath.Join(dir, "initdb"))
		pgCtl := executable(filepath.Join(dir, "pg_ctl"))
		if initdb != "" && pgCtl != "" {
			return binaries{initdb: initdb, pgCtl: pgCtl}, nil
		}
	}
	return binaries{}, ErrNotInstalled
}

// executable returns the absolute form of path when it is an executable
// regular file (after symlinks), else "".
func executable(path string) string {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	return abs
}

// sortByVersionDesc orders directories like /usr/lib/postgresql/<version>/bin
// by version, highest first ("16" before "9.6").
func sortByVersionDesc(dirs []string) {
	version := func(dir string) []int {
		var v []int
		for _, part := range strings.Split(filepath.Base(filepath.Dir(dir)), ".") {
			n, err := strconv.Atoi(part)
			if err != nil {
				return nil
			}
			v = append(v, n)
		}
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		a, b := version(dirs[i]), version(dirs[j])
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] > b[k]
			}
		}
		return len(a) > len(b)
	})
}

// install runs `apt-get update` and `apt-get install -y postgresql`; only root may.
func install(ctx context.Context, logf func(string, ...any)) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not running as root; run `sudo apt-get install -y postgresql` yourself")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("apt-get not found (not a Debian-like system?): %w; install the PostgreSQL server with your package manager", err)
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "postgresql"}} {
		logf("localpg: running apt-get %s", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 15))
		}
	}
	return nil
}
