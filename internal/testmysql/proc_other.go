//go:build unix && !linux

package testmysql

import "os/exec"

// setParentDeathSignal does nothing off Linux: a server left behind by a
// killed test process keeps running; reapStale cannot verify it (see
// staledir.VerifyProcess), so it leaves it and its directory alone and says so.
func setParentDeathSignal(*exec.Cmd) {}
