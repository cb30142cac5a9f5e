//go:build linux

package testredis

import (
	"os/exec"
	"syscall"
)

// diesWithParent says that dieWithParent makes a server die with its test
// binary, so removeStale may remove the directory of a dead test binary.
const diesWithParent = true

// dieWithParent makes the kernel send the server SIGTERM when the test
// binary dies, so a killed test run leaves no server behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
