package mysql

import (
	"context"

	"github.com/tasqhq/tasq/queue"
)

// Subscribe implements queue.Notifier within one process: it delivers the
// queue of jobs that this Adapter inserted (Insert, not InsertTx, whose
// commit it cannot see), promoted, rescued or made available again ("" when
// any queue may have work), until ctx is done. MySQL has no LISTEN/NOTIFY,
// so jobs written by other processes are found by polling only.
func (a *Adapter) Subscribe(ctx context.Context) (<-chan string, error) {
	ch := make(chan string, 64)
	a.subsMu.Lock()
	if a.subs == nil {
		a.subs = map[chan string]struct{}{}
	}
	a.subs[ch] = struct{}{}
	a.subsMu.Unlock()
	context.AfterFunc(ctx, func() {
		a.subsMu.Lock()
		delete(a.subs, ch)
		close(ch)
		a.subsMu.Unlock()
	})
	return ch, nil
}

// notify delivers each queue name to every subscriber without blocking:
// when a buffer is full, a wake-up for any queue ("") is as good as the
// names it would have delivered.
func (a *Adapter) notify(queues map[string]bool) {
	if len(queues) == 0 {
		return
	}
	a.subsMu.Lock()
	defer a.subsMu.Unlock()
	for ch := range a.subs {
		for q := range queues {
			select {
			case ch <- q:
			default:
				select {
				case ch <- "":
				default:
				}
			}
		}
	}
}

// notifyInserted wakes subscribers for the queues that gained available jobs.
func (a *Adapter) notifyInserted(jobs []queue.NewJob) {
	queues := map[string]bool{}
	for i := range jobs {
		if jobs[i].Delay <= 0 {
			queues[jobs[i].Queue] = true
		}
	}
	a.notify(queues)
}
