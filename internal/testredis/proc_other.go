//go:build !linux

package testredis

import "os/exec"

// diesWithParent is false outside Linux, so removeStale leaves directories
// alone: their servers may still run.
const diesWithParent = false

// dieWithParent does nothing outside Linux: a test binary killed there
// with SIGKILL leaves its redis-server running (go test -v logs its pid).
func dieWithParent(*exec.Cmd) {}
