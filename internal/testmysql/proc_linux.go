package testmysql

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel stop the server when the test
// process dies without stopping it (killed, or a panic in TestMain).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
