//go:build !linux

package staledir

import (
	"errors"
	"runtime"
)

// VerifyProcess cannot look into other processes without Linux's /proc, so it
// never vouches for one: a directory left behind with a running server is
// left alone there.
func VerifyProcess(int, string, ...string) error {
	return errors.New("cannot verify a process on " + runtime.GOOS + " (no /proc); stop it by hand")
}
