//go:build linux

package localpg

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// verifyPostmaster returns nil when process pid runs the postgres binary with
// dataDir (an absolute path without symlinks) as its working directory, as a
// postmaster does once it has started on dataDir, and an error saying what
// differs otherwise.
func verifyPostmaster(pid int, dataDir string) error {
	proc := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(proc + "/exe")
	if err != nil {
		return fmt.Errorf("cannot tell which program it runs: %w", err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)") // the package was upgraded under it
	if base := filepath.Base(exe); base != "postgres" && base != "postmaster" {
		return fmt.Errorf("it runs %s, not postgres", exe)
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return fmt.Errorf("cannot tell its working directory: %w", err)
	}
	if cwd != dataDir {
		return fmt.Errorf("it is a postgres serving %s, not %s", cwd, dataDir)
	}
	return nil
}
