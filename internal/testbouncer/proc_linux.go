//go:build linux

package testbouncer

import "syscall"

// sysProcAttr runs pgbouncer as ra's user and makes the kernel send it quit
// when the test binary dies, so a killed test run leaves no bouncer behind.
// Go sets the parent-death signal after changing the credentials, which
// would otherwise clear it.
func sysProcAttr(ra *runAs, quit syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: ra.credential(), Pdeathsig: quit}
}
