//go:build !unix

package testmysql

import (
	"context"
	"errors"

	gomysql "github.com/go-sql-driver/mysql"
)

// localServer is not available off unix.
type localServer struct{}

func startLocal(context.Context, func(string, ...any)) (*localServer, error) {
	return nil, errors.New("starting MariaDB from local binaries needs a unix system; set " + EnvURL + " to use an existing server")
}

func (*localServer) config() *gomysql.Config { return gomysql.NewConfig() }

func (*localServer) stop() error { return nil }
