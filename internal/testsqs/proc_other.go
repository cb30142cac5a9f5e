//go:build !unix

package testsqs

import "os/exec"

// setProcAttrs does nothing where process groups are not available.
func setProcAttrs(*exec.Cmd) {}

// lockFile does not lock where flock is not available: start one test
// binary first, or run `npm ci` in internal/testsqs/emulator beforehand.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
