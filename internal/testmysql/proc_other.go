//go:build unix && !linux

package testmysql

import "os/exec"

// setParentDeathSignal does nothing off Linux: a server left behind by a
// killed test process is stopped by the next run's reapStale.
func setParentDeathSignal(*exec.Cmd) {}
