package testmain

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Setup describes the server one harness provides to a test binary.
type Setup struct {
	// Name prefixes messages and tags the log ("testpg").
	Name string
	// Need says what the tests cannot run without ("a usable PostgreSQL server").
	Need string
	// Timeout bounds Start.
	Timeout time.Duration
	// Start sets the server up (using a URL from the environment, or starting
	// one) and returns where it comes from, for messages, and how to stop it.
	Start func(ctx context.Context, log *slog.Logger) (source string, stop func() error, err error)
}

// stops holds the stop functions of every server this test binary set up, so
// that an interrupt stops all of them, not only the first harness's.
var (
	stopsMu sync.Mutex
	stops   []func()
	trap    sync.Once
)

// Serve is the body of every harness's Main: it starts the server, runs the
// tests inside, stops the server (also on SIGINT or SIGTERM, for every
// harness of the binary) and turns a failed start or teardown into a
// failing exit code with a message that says what is missing.
func Serve(m Runner, s Setup) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("pkg", s.Name)

	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	source, stop, err := s.Start(ctx, log)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: cannot run these tests without %s:\n%v\n", s.Name, s.Need, err)
		return 1
	}
	var once sync.Once
	var stopErr error
	stopOnce := func() error { once.Do(func() { stopErr = stop() }); return stopErr }
	stopsMu.Lock()
	stops = append(stops, func() {
		fmt.Fprintf(os.Stderr, "%s: interrupted: stopping %s\n", s.Name, source)
		_ = stopOnce()
	})
	stopsMu.Unlock()
	trap.Do(trapSignals)

	code := m.Run()

	if err := stopOnce(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: tearing down %s: %v\n", s.Name, source, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// trapSignals stops every registered server on the first SIGINT or SIGTERM
// and exits, as a normal end of the tests would have stopped them.
func trapSignals() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		signal.Stop(sigs)
		stopsMu.Lock()
		defer stopsMu.Unlock()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		os.Exit(2)
	}()
}
