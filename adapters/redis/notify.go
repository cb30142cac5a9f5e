package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// pingEvery is how long a quiet subscription waits before it checks its
// connection with a PING; a connection that does not answer within another
// pingEvery is replaced.
const pingEvery = 30 * time.Second

// Subscribe implements queue.Notifier. It holds one pub/sub connection
// subscribed to the channel <prefix>wake, on which the scripts PUBLISH the
// name of each queue that gains available jobs (insert, promotion of due
// jobs, rescue, hand-back, retry). When the connection drops it reconnects
// with backoff and then delivers "" (any queue may have work), since
// messages published meanwhile were lost. The channel is closed when ctx is
// done.
func (a *Adapter) Subscribe(ctx context.Context) (<-chan string, error) {
	ps, err := a.subscribe(ctx)
	if err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		cur = ps
	)
	setCur := func(p *goredis.PubSub) {
		mu.Lock()
		cur = p
		mu.Unlock()
		if p != nil && ctx.Err() != nil {
			_ = p.Close()
		}
	}
	// Closing the connection is what ends a blocked receive.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if cur != nil {
			_ = cur.Close()
		}
	})
	out := make(chan string, 64)
	go func() {
		defer close(out)
		defer stop()
		backoff := 100 * time.Millisecond
		pinged := false
		for {
			if ps == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				if ps, err = a.subscribe(ctx); err != nil {
					backoff = min(backoff*2, 5*time.Second)
					continue
				}
				setCur(ps)
				backoff, pinged = 100*time.Millisecond, false
				deliver(out, "")
			}
			msg, err := ps.ReceiveTimeout(ctx, pingEvery)
			if ctx.Err() != nil {
				_ = ps.Close()
				return
			}
			var ne net.Error
			switch {
			case err != nil && errors.As(err, &ne) && ne.Timeout() && !pinged:
				pinged = ps.Ping(ctx) == nil
				if pinged {
					continue
				}
				fallthrough
			case err != nil:
				// Dropped, or silent since the last PING: start over.
				_ = ps.Close()
				ps = nil
				setCur(nil)
				continue
			}
			pinged = false
			switch m := msg.(type) {
			case *goredis.Message:
				deliver(out, m.Payload)
			case *goredis.Subscription:
				// go-redis re-subscribed on a new connection by itself.
				if m.Kind == "subscribe" {
					deliver(out, "")
				}
			}
		}
	}()
	return out, nil
}

// subscribe opens a pub/sub connection on the wake channel and waits for
// the server's confirmation, so an unreachable server is an error here.
func (a *Adapter) subscribe(ctx context.Context) (*goredis.PubSub, error) {
	ch := a.keys.channel()
	ps := a.client.Subscribe(ctx, ch)
	msg, err := ps.ReceiveTimeout(ctx, 10*time.Second)
	if err != nil {
		_ = ps.Close()
		return nil, a.wrap("subscribe to "+ch, err)
	}
	if _, ok := msg.(*goredis.Subscription); !ok {
		_ = ps.Close()
		return nil, fmt.Errorf("tasq/redis: subscribe to %s on %s: got %v instead of the confirmation", ch, a.addr, msg)
	}
	return ps, nil
}

// deliver never blocks the subscriber: when the buffer is full, a wake-up
// for any queue ("") is as good as the names it would have delivered.
func deliver(out chan string, q string) {
	select {
	case out <- q:
	default:
		select {
		case out <- "":
		default:
		}
	}
}
