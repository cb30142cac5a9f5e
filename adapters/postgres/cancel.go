package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasqhq/tasq/queue"
)

// Listen implements queue.CancelListener: the wake-ups Subscribe delivers,
// and the cancellations of running jobs that CancelJob announces on the
// schema's control channel (ControlChannelFor), from one LISTEN connection.
// After the connection was lost and made again it delivers
// queue.NoticeResync, since notifications sent meanwhile were lost. The
// subscription also hears clients that wait for jobs ("await", see
// AwaitJob): for a while after that, Finish names the jobs it finished on
// the done channel.
//
// In poll-only mode (WakeupsPoll) nothing LISTENs: Listen delivers the
// poll's wake-ups only, and a worker learns that a job was cancelled at its
// next lease renewal.
func (a *Adapter) Listen(ctx context.Context) (<-chan queue.Notice, error) {
	out := make(chan queue.Notice, 64)
	if a.setup.Wakeups == WakeupsPoll {
		in := a.pollWakeups(ctx)
		go func() {
			defer close(out)
			for q := range in {
				queue.DeliverWake(out, q)
			}
		}()
		return out, nil
	}
	// The wake-up channel is LISTENed last, so that pg_stat_activity shows
	// the connection's query as LISTEN "tasq_jobs", as before.
	err := a.listenLoop(ctx, []string{a.sql.ctrl, a.sql.channel},
		func(n *pgconn.Notification) {
			if n.Channel == a.sql.ctrl {
				a.control(ctx, out, n.Payload)
				return
			}
			queue.DeliverWake(out, n.Payload)
		},
		func() { queue.DeliverNotice(ctx, out, queue.Notice{Kind: queue.NoticeResync}) },
		func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// control handles one message of the control channel: a cancel becomes a
// notice; "await" turns on finish notifications for a while. Anything else
// (a message of a later version) is ignored.
func (a *Adapter) control(ctx context.Context, out chan queue.Notice, payload string) {
	switch {
	case payload == awaitMessage:
		a.heardAwait()
	default:
		l, ok, err := queue.ParseCancelMessage(payload)
		switch {
		case err != nil:
			a.log.WarnContext(ctx, "tasq/postgres: unreadable cancel notification; the worker learns of the cancel at its lease renewal", "payload", payload, "err", err)
		case ok:
			queue.DeliverNotice(ctx, out, queue.Notice{Kind: queue.NoticeCancel, Lease: l})
		}
	}
}

// cancellable are the states CancelJob takes a job from.
var cancellable = []string{string(queue.StatePending), string(queue.StateScheduled), string(queue.StateAvailable), string(queue.StateRunning), string(queue.StateRetryable)}

// cancelSQL marks a job cancelled, with "cancelled by operator" in its
// error history; the caller has locked the row and checked its state.
var cancelSQL = `UPDATE tasq_jobs SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL, deps_waiting = NULL,
    errors = tasq_errors_append(errors, jsonb_build_object('attempt', attempt, 'at', now(), 'error', 'cancelled by operator'), ` + strconv.Itoa(queue.MaxErrorHistory) + `),
    errors_omitted = errors_omitted + CASE WHEN jsonb_array_length(errors) >= ` + strconv.Itoa(queue.MaxErrorHistory) + ` THEN 1 ELSE 0 END
WHERE id = $1`

// CancelJob implements queue.JobEditor: a job that has not finished is
// cancelled at once. For a running job the same transaction notifies the
// control channel (ControlChannelFor) with "cancel <id> <claim token>", so
// the worker that runs it cancels its Handle's context within moments
// (queue.ErrCancelledByOperator); a worker that misses the notification
// learns it at its next lease renewal. The worker's outcome is refused by
// the completion guard either way. The job is also named on the done
// channel (DoneChannelFor), for clients waiting for it.
func (a *Adapter) CancelJob(ctx context.Context, id uuid.UUID) error {
	var state string
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		var token int64
		err := tx.QueryRow(ctx, a.sql.q(`SELECT state::text, claim_token FROM tasq_jobs WHERE id = $1 FOR UPDATE`), id).Scan(&state, &token)
		if err != nil {
			return err
		}
		if !slices.Contains(cancellable, state) {
			return queue.ErrJobState
		}
		if _, err = tx.Exec(ctx, a.sql.q(cancelSQL), id); err != nil {
			return err
		}
		// The notifications are sent at the commit, with the cancel or not at all.
		notify := a.sql.q(`SELECT pg_notify($1, $2)`)
		if state == string(queue.StateRunning) {
			msg := queue.CancelMessage(queue.Lease{ID: id, Token: token})
			if _, err := tx.Exec(ctx, notify, a.sql.ctrl, msg); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, notify, a.sql.done, id.String())
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %s", queue.ErrJobNotFound, id)
	case errors.Is(err, queue.ErrJobState):
		return fmt.Errorf("%w: cannot cancel job %s: it is %s (allowed from: %s)", queue.ErrJobState, id, state, strings.Join(cancellable, ", "))
	}
	return wrapErr("cancel", err)
}
