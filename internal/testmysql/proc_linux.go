package testmysql

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// setParentDeathSignal makes the kernel stop the server when the test
// process dies without stopping it (killed, or a panic in TestMain).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// verifyServer returns nil when process pid runs mariadbd (or mysqld) with
// dataDir (an absolute path without symlinks) as its working directory, as a
// server does once it has started on dataDir, and an error saying what
// differs otherwise.
func verifyServer(pid int, dataDir string) error {
	proc := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(proc + "/exe")
	if err != nil {
		return fmt.Errorf("cannot tell which program it runs: %w", err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)") // the package was upgraded under it
	if base := filepath.Base(exe); base != "mariadbd" && base != "mysqld" {
		return fmt.Errorf("it runs %s, not mariadbd", exe)
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return fmt.Errorf("cannot tell its working directory: %w", err)
	}
	if cwd != dataDir {
		return fmt.Errorf("it is a mariadbd working in %s, not in %s", cwd, dataDir)
	}
	return nil
}
