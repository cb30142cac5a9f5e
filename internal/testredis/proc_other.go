//go:build !linux

package testredis

import (
	"io/fs"
	"os/exec"
)

// dieWithParent does nothing outside Linux: a test binary killed there
// with SIGKILL leaves its redis-server running (go test -v logs its pid).
func dieWithParent(*exec.Cmd) {}

// processAlive says yes outside Linux, so removeStale leaves directories
// alone: their servers may still run.
func processAlive(int) bool { return true }

// fileOwner cannot tell outside Linux, so removeStale leaves directories
// alone there (as processAlive already makes it) and says so.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
