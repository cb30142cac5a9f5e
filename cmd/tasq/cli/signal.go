package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// errInterrupted is the cause of a context cancelled by SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted by a signal")

// withSignals returns a context cancelled, with cause errInterrupted, by the
// first SIGINT or SIGTERM, which starts a graceful shutdown. From then on the
// signals get their default handling back, so a second one ends the process
// at once. onSignal, when not nil, runs before ctx is cancelled by a signal
// (not when the parent ends). Call stop when done; it is idempotent.
func withSignals(parent context.Context, onSignal func()) (ctx context.Context, stop func()) {
	sigCtx, stopNotify := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancelCause(parent)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-sigCtx.Done():
		case <-done:
			return
		}
		stopNotify() // from now on a second signal kills the process
		if parent.Err() == nil {
			if onSignal != nil {
				onSignal()
			}
			cancel(errInterrupted)
		}
	})
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			stopNotify()
			cancel(nil)
		})
	}
}
