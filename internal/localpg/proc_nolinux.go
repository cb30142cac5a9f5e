//go:build !linux

package localpg

import (
	"errors"
	"runtime"
)

// verifyPostmaster cannot look into other processes without Linux's /proc, so
// it never vouches for one: a cluster left behind with a running server is
// left alone there.
func verifyPostmaster(int, string) error {
	return errors.New("cannot verify a process on " + runtime.GOOS + " (no /proc); stop it by hand")
}
