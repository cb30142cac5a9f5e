// Package freeport finds a TCP port on 127.0.0.1 that nothing listens on, for
// the throwaway servers the demo and the test harnesses start.
package freeport

import (
	"fmt"
	"net"
)

// Loopback asks the kernel for a port on 127.0.0.1 that is free right now.
// Another process may take it before the caller binds it, so callers retry a
// failed start with a new port.
func Loopback() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w; is the loopback interface up?", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("release probe port %d: %w", port, err)
	}
	return port, nil
}
