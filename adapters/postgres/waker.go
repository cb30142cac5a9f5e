package postgres

import (
	"context"
	"sync"
	"time"
)

// Wake-ups of plain (non-transactional) dispatches are sent after the
// dispatch has committed, by one goroutine per adapter, coalesced.
//
// PostgreSQL serialises the commits of transactions that NOTIFY: each holds
// one cluster-wide lock from before its commit until the commit is on disk.
// With the NOTIFY inside every dispatch's insert, single-job dispatch stayed
// at 1.3-2.1k jobs/s however many goroutines dispatched, against 2.0-7.2k
// without it at 1 to 32 (tasq bench --mode notify). So a dispatch commits
// without notifying, and the waker sends the wake-ups in a statement of its
// own that writes nothing, so its commit has nothing to flush and holds the
// lock only briefly. It sends at once when idle; wake-ups asked for while a
// send is in flight go out together in the next one (batching by round trip,
// with no timer, so a lone dispatch wakes workers as fast as before).

// waker coalesces the wake-ups of one adapter.
type waker struct {
	a       *Adapter
	mu      sync.Mutex
	pending map[string]bool
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// waker returns the adapter's waker, starting it on first use.
func (a *Adapter) waker() *waker {
	a.wakeOnce.Do(func() {
		a.wk = &waker{a: a, pending: map[string]bool{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		go a.wk.run()
	})
	return a.wk
}

// wake asks for queues to be notified soon.
func (w *waker) wake(queues []string) {
	w.mu.Lock()
	for _, q := range queues {
		w.pending[q] = true
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *waker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.kick:
			w.send()
		case <-w.stop:
			w.send() // what is pending goes out before the pool closes
			return
		}
	}
}

func (w *waker) send() {
	w.mu.Lock()
	if len(w.pending) == 0 {
		w.mu.Unlock()
		return
	}
	queues := make([]string, 0, len(w.pending))
	for q := range w.pending {
		queues = append(queues, q)
	}
	clear(w.pending)
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A lost wake-up only delays pick-up until the workers' next poll.
	if _, err := w.a.pool.Exec(ctx, `SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q`, w.a.sql.channel, queues); err != nil {
		w.a.log.DebugContext(ctx, "tasq/postgres: wake-up notification failed; workers find the jobs at their next poll", "err", err)
	}
}

// close sends what is pending and stops the waker.
func (w *waker) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
