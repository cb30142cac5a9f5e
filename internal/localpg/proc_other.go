//go:build !unix

package localpg

import (
	"errors"
	"os/exec"
)

type runAs struct {
	name     string
	uid, gid int
	home     string
}

func currentRunAs() (*runAs, error) {
	return nil, errors.New("localpg: only unix systems are supported; set TASQ_DATABASE_URL to use an existing server")
}

func (ra *runAs) apply(*exec.Cmd) {}
