//go:build unix && !linux

package testbouncer

import "syscall"

// sysProcAttr runs pgbouncer as ra's user. Outside Linux a test binary
// killed with SIGKILL leaves its bouncer running (Start logs its pid).
func sysProcAttr(ra *runAs, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: ra.credential()}
}
