package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Subscribe implements queue.Notifier. It holds one dedicated connection
// LISTENing on the schema's channel (ChannelFor) and delivers each
// notification's queue name. When the connection drops it reconnects with backoff and then delivers "" (any
// queue may have work), since notifications sent meanwhile were lost. The
// channel is closed when ctx is done.
//
// The connection is made like the pool's, or to the listen URL (see
// Wakeups). In poll-only mode (WakeupsPoll: behind a transaction pooler
// without a listen URL, where a LISTEN would hear nothing) nothing LISTENs:
// the channel is fed by a poll, every WakePollInterval, that delivers the
// queues whose next available job changed since the last one.
func (a *Adapter) Subscribe(ctx context.Context) (<-chan string, error) {
	if a.setup.Wakeups == WakeupsPoll {
		return a.pollWakeups(ctx), nil
	}
	out := make(chan string, 64)
	err := a.listenLoop(ctx, []string{a.sql.channel},
		func(n *pgconn.Notification) { deliver(out, n.Payload) },
		func() { deliver(out, "") },
		func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// listenLoop holds one dedicated connection LISTENing on channels and hands
// each notification to got, until ctx is done; then it calls closed. When
// the connection drops it reconnects with backoff and calls reconnected,
// since notifications sent meanwhile were lost. It returns an error, and
// starts nothing, when the first connection cannot be made.
func (a *Adapter) listenLoop(ctx context.Context, channels []string, got func(*pgconn.Notification), reconnected, closed func()) error {
	conn, err := a.listen(ctx, channels...)
	if err != nil {
		return err
	}
	go func() {
		defer closed()
		backoff := 100 * time.Millisecond
		for {
			if conn == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				if conn, err = a.listen(ctx, channels...); err != nil {
					conn = nil
					backoff = min(backoff*2, 5*time.Second)
					continue
				}
				backoff = 100 * time.Millisecond
				reconnected()
			}
			n, err := conn.WaitForNotification(ctx)
			if n != nil {
				got(n)
			}
			if err != nil {
				closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = conn.Close(closeCtx)
				cancel()
				conn = nil
				if ctx.Err() != nil {
					return
				}
			}
		}
	}()
	return nil
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

// listen opens a connection for LISTEN (see Wakeups) and LISTENs on channels.
func (a *Adapter) listen(ctx context.Context, channels ...string) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, a.listenCfg.Copy())
	if err != nil {
		return nil, wrapErr("connect listener", err)
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			_ = conn.Close(ctx)
			return nil, wrapErr("listen", err)
		}
	}
	return conn, nil
}

// headsSQL returns, for every queue with available jobs, the job a claim
// would take next (the highest priority, oldest) and its claim token. It
// walks tasq_jobs_claim_idx one queue at a time (a loose index scan), so it
// costs a few index probes per queue however many jobs wait.
const headsSQL = `
WITH RECURSIVE heads AS (
    (SELECT queue, id, claim_token FROM tasq_jobs WHERE state = 'available'
     ORDER BY queue, priority DESC, run_at, id LIMIT 1)
    UNION ALL
    SELECT next.queue, next.id, next.claim_token
    FROM heads, LATERAL (
        SELECT queue, id, claim_token FROM tasq_jobs WHERE state = 'available' AND queue > heads.queue
        ORDER BY queue, priority DESC, run_at, id LIMIT 1) AS next
)
SELECT queue, id, claim_token FROM heads`

// head is a queue's next job, as headsSQL reports it.
type head struct {
	id    [16]byte
	token int64
}

// pollWakeups is Subscribe in poll-only mode. Every WakePollInterval it
// reads each queue's next available job and delivers the queues where that
// changed: a queue that gained its first job, whose next job was claimed
// and another waits, or whose job came back. A queue whose jobs nobody
// takes (a kind no worker has) is not delivered again and again; a job
// that arrives behind such a job is found by the workers' own poll.
// The channel closes when ctx is done.
func (a *Adapter) pollWakeups(ctx context.Context) <-chan string {
	out := make(chan string, 64)
	every := a.setup.WakePollInterval
	go func() {
		defer close(out)
		t := time.NewTicker(every)
		defer t.Stop()
		var last map[string]head
		var failing error
		for {
			heads, err := a.availableHeads(ctx, every)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				if failing == nil {
					a.log.WarnContext(ctx, "tasq/postgres: poll-only mode cannot read the available jobs; trying again every wake_poll", "err", err, "wake_poll", every)
				}
				failing, last = err, nil // deliver every queue once it works again
			default:
				if failing != nil {
					a.log.InfoContext(ctx, "tasq/postgres: poll-only mode reads the available jobs again")
					failing = nil
				}
				for q, h := range heads {
					if old, ok := last[q]; !ok || old != h {
						deliver(out, q)
					}
				}
				last = heads
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// availableHeads runs headsSQL, with its plan pinned to the index.
func (a *Adapter) availableHeads(ctx context.Context, every time.Duration) (map[string]head, error) {
	ctx, cancel := context.WithTimeout(ctx, max(10*every, 5*time.Second))
	defer cancel()
	heads := map[string]head{}
	err := a.pinned(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var q string
			var id pgtype.UUID
			var h head
			if err := rows.Scan(&q, &id, &h.token); err != nil {
				return err
			}
			h.id = id.Bytes
			heads[q] = h
		}
		return nil
	}, a.sql.q(headsSQL))
	if err != nil {
		return nil, wrapErr("read the available jobs", err)
	}
	return heads, nil
}
