//go:build unix && !linux

package testmysql

import (
	"errors"
	"os/exec"
	"runtime"
)

// setParentDeathSignal does nothing off Linux: a server left behind by a
// killed test process keeps running; reapStale cannot verify it (see
// verifyServer), so it leaves it and its directory alone and says so.
func setParentDeathSignal(*exec.Cmd) {}

// verifyServer cannot look into other processes without Linux's /proc, so it
// never vouches for one.
func verifyServer(int, string) error {
	return errors.New("cannot verify a process on " + runtime.GOOS + " (no /proc); stop it by hand")
}
