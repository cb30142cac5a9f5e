//go:build !unix

package testbouncer

import (
	"errors"
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
