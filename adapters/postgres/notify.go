package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Subscribe implements queue.Notifier. It holds one dedicated connection
// LISTENing on NotifyChannel and delivers each notification's queue name. When
// the connection drops it reconnects with backoff and then delivers "" (any
// queue may have work), since notifications sent meanwhile were lost. The
// channel is closed when ctx is done.
func (a *Adapter) Subscribe(ctx context.Context) (<-chan string, error) {
	conn, err := a.listen(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		backoff := 100 * time.Millisecond
		for {
			if conn == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				if conn, err = a.listen(ctx); err != nil {
					conn = nil
					backoff = min(backoff*2, 5*time.Second)
					continue
				}
				backoff = 100 * time.Millisecond
				deliver(out, "")
			}
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = conn.Close(closeCtx)
				cancel()
				conn = nil
				if ctx.Err() != nil {
					return
				}
				continue
			}
			deliver(out, n.Payload)
		}
	}()
	return out, nil
}

// deliver never blocks the listener: when the buffer is full, a wake-up for
// any queue ("") is as good as the names it would have delivered.
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

func (a *Adapter) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, a.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, wrapErr("connect listener", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		_ = conn.Close(ctx)
		return nil, wrapErr("listen", err)
	}
	return conn, nil
}
