package redis

import (
	"context"
	"strconv"
	"strings"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/queue"
)

var _ queue.CancelListener = (*Adapter)(nil)

// Listen implements queue.CancelListener: the wake-ups Subscribe delivers,
// and the cancellations of running jobs that CancelJob publishes on
// <prefix>ctrl ("cancel <id> <token>"), from one pub/sub connection. After
// the connection was lost and made again it delivers queue.NoticeResync,
// since messages published meanwhile were lost.
func (a *Adapter) Listen(ctx context.Context) (<-chan queue.Notice, error) {
	out := make(chan queue.Notice, 64)
	ctrl := a.keys.ctrl()
	err := a.pubsub(ctx, []string{a.keys.channel(), ctrl},
		func(m *goredis.Message) {
			if m.Channel != ctrl {
				deliverWake(out, m.Payload)
				return
			}
			if l, ok := parseCancel(m.Payload); ok {
				deliverNotice(ctx, out, queue.Notice{Kind: queue.NoticeCancel, Lease: l})
			}
		},
		func() { deliverNotice(ctx, out, queue.Notice{Kind: queue.NoticeResync}) },
		func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseCancel reads "cancel <id> <token>"; anything else is not a cancel.
func parseCancel(payload string) (queue.Lease, bool) {
	rest, ok := strings.CutPrefix(payload, "cancel ")
	if !ok {
		return queue.Lease{}, false
	}
	id, token, ok := strings.Cut(rest, " ")
	if !ok {
		return queue.Lease{}, false
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return queue.Lease{}, false
	}
	tok, err := strconv.ParseInt(token, 10, 64)
	if err != nil {
		return queue.Lease{}, false
	}
	return queue.Lease{ID: uid, Token: tok}, true
}

// deliverWake never blocks the subscriber: when the buffer is full, a
// wake-up for any queue is as good as the names it would have delivered.
func deliverWake(out chan queue.Notice, q string) {
	select {
	case out <- queue.Notice{Kind: queue.NoticeWake, Queue: q}:
	default:
		select {
		case out <- queue.Notice{Kind: queue.NoticeWake}:
		default:
		}
	}
}

// deliverNotice delivers a notice that must not be lost (a cancel, a
// resync), waiting for room unless ctx is done.
func deliverNotice(ctx context.Context, out chan queue.Notice, n queue.Notice) {
	select {
	case out <- n:
	case <-ctx.Done():
	}
}
