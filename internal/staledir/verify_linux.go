//go:build linux

package staledir

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// VerifyProcess returns nil when process pid runs a program whose base name
// is one of exes with dir (an absolute path without symlinks) as its working
// directory, as a server does once it has started on dir, and an error saying
// what differs otherwise.
func VerifyProcess(pid int, dir string, exes ...string) error {
	if len(exes) == 0 {
		return fmt.Errorf("no server program is named, so process %d cannot be one", pid)
	}
	proc := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(proc + "/exe")
	if err != nil {
		return fmt.Errorf("cannot tell which program it runs: %w", err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)") // the package was upgraded under it
	if !slices.Contains(exes, filepath.Base(exe)) {
		return fmt.Errorf("it runs %s, not %s", exe, exes[0])
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return fmt.Errorf("cannot tell its working directory: %w", err)
	}
	if cwd != dir {
		return fmt.Errorf("it is a %s working in %s, not in %s", exes[0], cwd, dir)
	}
	return nil
}
