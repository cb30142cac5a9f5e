//go:build !unix

package testbouncer

import (
	"errors"
	"io/fs"
	"syscall"
)

type runAs struct {
	name     string
	uid, gid int
	home     string
}

func currentRunAs() (*runAs, error) {
	return nil, errors.New("only unix systems are supported (PgBouncer runs there)")
}

func sysProcAttr(*runAs, syscall.Signal) *syscall.SysProcAttr { return nil }

func processAlive(int) bool { return true }

func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
