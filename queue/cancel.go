package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// ErrCancelledByOperator is the cause of a running Handle's context when an
// operator cancelled its job (`tasq jobs cancel`, Client.Cancel,
// JobEditor.CancelJob) while it ran: errors.Is(context.Cause(ctx),
// ErrCancelledByOperator) tells it apart from a timeout or a shutdown. The
// job is cancelled already; whatever Handle returns is not stored, no retry
// follows and the Failed hook does not run.
var ErrCancelledByOperator = errors.New("tasq: job cancelled by an operator")

// NoticeKind says what a Notice is about.
type NoticeKind uint8

// The kinds of Notice.
const (
	// NoticeWake: jobs became available on Notice.Queue ("" for any queue).
	NoticeWake NoticeKind = iota + 1
	// NoticeCancel: an operator cancelled the job Notice.Lease.ID while the
	// execution holding claim token Notice.Lease.Token ran it.
	NoticeCancel
	// NoticeResync: notices may have been lost (the subscription was
	// re-established). The worker wakes for every queue and checks its
	// claims at once instead of at its next lease renewal.
	NoticeResync
)

// Notice is one message of a CancelListener subscription.
type Notice struct {
	Kind  NoticeKind
	Queue string // NoticeWake
	Lease Lease  // NoticeCancel
}

// cancelPrefix starts a control message about a cancelled running job.
const cancelPrefix = "cancel "

// CancelMessage is the control message with which a backend tells its
// workers that an operator cancelled the execution holding l: "cancel <job
// id> <claim token>". Adapters send it; ParseCancelMessage reads it.
func CancelMessage(l Lease) string {
	return cancelPrefix + l.ID.String() + " " + strconv.FormatInt(l.Token, 10)
}

// ParseCancelMessage reads a CancelMessage. ok is false when payload is no
// cancel message at all (another control message); err says what is wrong
// with one that is but cannot be read.
func ParseCancelMessage(payload string) (l Lease, ok bool, err error) {
	rest, ok := strings.CutPrefix(payload, cancelPrefix)
	if !ok {
		return Lease{}, false, nil
	}
	id, token, found := strings.Cut(rest, " ")
	if !found {
		return Lease{}, true, errors.New("want \"cancel <job id> <claim token>\"")
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return Lease{}, true, err
	}
	tok, err := strconv.ParseInt(token, 10, 64)
	if err != nil {
		return Lease{}, true, err
	}
	return Lease{ID: uid, Token: tok}, true, nil
}

// DeliverWake sends a wake-up for queue q on out without blocking a
// listener: when the buffer is full, a wake-up for any queue is as good as
// the names it would have delivered.
func DeliverWake(out chan<- Notice, q string) {
	select {
	case out <- Notice{Kind: NoticeWake, Queue: q}:
	default:
		select {
		case out <- Notice{Kind: NoticeWake}:
		default:
		}
	}
}

// DeliverNotice sends a notice that must not be lost (a cancel, a resync) on
// out, waiting for room unless ctx is done.
func DeliverNotice(ctx context.Context, out chan<- Notice, n Notice) {
	select {
	case out <- n:
	case <-ctx.Done():
	}
}

// CancelListener is the capability of backends that tell workers at once
// when an operator cancels a running job, so that its Handle's context is
// cancelled within moments rather than at the next lease renewal. Listen is
// Notifier.Subscribe with cancellations added: one subscription, one
// connection, for both. A worker uses Listen instead of Subscribe when the
// backend has it.
//
// Notices sent while the subscription is down are lost: after it is
// re-established the channel delivers a NoticeResync. The channel closes when
// ctx is done or the subscription is lost for good; the caller then listens
// again with backoff. Lease renewal stays the fallback: a worker that misses
// a cancellation learns of it when its renewal finds the claim gone.
type CancelListener interface {
	Notifier
	Listen(ctx context.Context) (<-chan Notice, error)
}

// Cancel cancels job id: a job that is waiting (scheduled, available,
// retryable) never runs, and a running one ends cancelled at once. On
// backends that are a CancelListener (postgres, redis) the worker running it
// is told at once and cancels its Handle's context with
// ErrCancelledByOperator as the cause; elsewhere the worker learns it at its
// next lease renewal (every third of the lease, 10 s by default). Whatever
// the Handle returns afterwards is discarded, and the Failed hook does not
// run.
//
// The job is looked for in the client's default adapter, then in the
// adapters given with WithDriver. Cancel returns an error wrapping
// ErrJobNotFound when none has it, and ErrJobState when it has finished
// (completed, failed or cancelled) already.
func (c *Client) Cancel(ctx context.Context, id uuid.UUID) error {
	if c == nil {
		return ErrNoDefaultClient
	}
	var tried []string
	for _, a := range c.adapters() {
		ed, ok := a.(JobEditor)
		if !ok {
			continue
		}
		tried = append(tried, a.Name())
		err := ed.CancelJob(ctx, id)
		if errors.Is(err, ErrJobNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tasq: cancel job %s on %s: %w", id, a.Name(), err)
		}
		return nil
	}
	if len(tried) == 0 {
		return fmt.Errorf("tasq: cancel job %s: %w", id, errNoEditor(c))
	}
	return fmt.Errorf("tasq: cancel job %s: %w (looked in %v)", id, ErrJobNotFound, tried)
}

// adapters returns the client's adapters: the default one first, then the
// named ones by name, each once.
func (c *Client) adapters() []Adapter {
	out := []Adapter{c.adapter}
	names := make([]string, 0, len(c.named))
	for n := range c.named {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if a := c.named[n]; !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func errNoEditor(c *Client) error {
	return fmt.Errorf("%w: none of the client's backends (%s) can change a job by ID (queue.JobEditor)", ErrUnsupported, adapterNames(c))
}

func adapterNames(c *Client) string {
	var s string
	for i, a := range c.adapters() {
		if i > 0 {
			s += ", "
		}
		s += a.Name()
	}
	return s
}
