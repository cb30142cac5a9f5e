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
	out := make(chan string, 64)
	err := a.pubsub(ctx, []string{a.keys.channel()},
		func(m *goredis.Message) { deliver(out, m.Payload) },
		func() { deliver(out, "") },
		func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pubsub holds one pub/sub connection subscribed to channels and hands each
// message to got, until ctx is done; then it calls closed. When the
// connection drops it reconnects with backoff and calls reconnected, since
// messages published meanwhile were lost. It returns an error, and starts
// nothing, when the first subscription fails.
func (a *Adapter) pubsub(ctx context.Context, channels []string, got func(*goredis.Message), reconnected, closed func()) error {
	ps, err := a.subscribe(ctx, channels...)
	if err != nil {
		return err
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
	go func() {
		defer closed()
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
				if ps, err = a.subscribe(ctx, channels...); err != nil {
					backoff = min(backoff*2, 5*time.Second)
					continue
				}
				setCur(ps)
				backoff, pinged = 100*time.Millisecond, false
				reconnected()
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
				got(m)
			case *goredis.Subscription:
				// go-redis re-subscribed on a new connection by itself
				// (once per channel).
				if m.Kind == "subscribe" {
					reconnected()
				}
			}
		}
	}()
	return nil
}

// subscribe opens a pub/sub connection on channels and waits for the
// server's confirmation of each, so an unreachable server is an error here.
func (a *Adapter) subscribe(ctx context.Context, channels ...string) (*goredis.PubSub, error) {
	ps := a.client.Subscribe(ctx, channels...)
	for range channels {
		msg, err := ps.ReceiveTimeout(ctx, 10*time.Second)
		if err != nil {
			_ = ps.Close()
			return nil, a.wrap(fmt.Sprintf("subscribe to %v", channels), err)
		}
		if _, ok := msg.(*goredis.Subscription); !ok {
			_ = ps.Close()
			return nil, fmt.Errorf("tasq/redis: subscribe to %v on %s: got %v instead of the confirmation", channels, a.addr, msg)
		}
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
