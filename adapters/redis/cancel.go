package redis

import (
	"context"

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
				queue.DeliverWake(out, m.Payload)
				return
			}
			if l, ok, err := queue.ParseCancelMessage(m.Payload); ok && err == nil {
				queue.DeliverNotice(ctx, out, queue.Notice{Kind: queue.NoticeCancel, Lease: l})
			}
		},
		func() { queue.DeliverNotice(ctx, out, queue.Notice{Kind: queue.NoticeResync}) },
		func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}
