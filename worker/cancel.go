package worker

import (
	"context"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// operatorCancel is the cause of a Handle's context when an operator
// cancelled its job: queue.ErrCancelledByOperator to the Handle (errors.Is
// on context.Cause), and a lost claim (errLeaseLost) to the executor, which
// then drops the attempt's outcome (the job is cancelled already) and runs
// no Failed hook.
type operatorCancel struct{}

func (operatorCancel) Error() string   { return queue.ErrCancelledByOperator.Error() }
func (operatorCancel) Unwrap() []error { return []error{queue.ErrCancelledByOperator, errLeaseLost} }

var errCancelledByOperator error = operatorCancel{}

// notices handles one Listen subscription until its channel closes:
// wake-ups, cancels of running jobs, and resyncs after lost notices.
func (w *Worker) notices(ctx context.Context, ch <-chan queue.Notice) {
	for n := range ch {
		switch n.Kind {
		case queue.NoticeWake:
			if n.Queue == "" || w.serves(n.Queue) {
				w.poke(w.wake)
			}
		case queue.NoticeCancel:
			w.cancelled(ctx, n.Lease)
		case queue.NoticeResync:
			w.poke(w.wake)
			w.renew(ctx) // a cancel may have been among the lost notices
		}
	}
}

// cancelled cancels the Handle of the execution l, whose job an operator
// cancelled; the notice is about any worker's job, and most are not here.
func (w *Worker) cancelled(ctx context.Context, l queue.Lease) {
	if n := w.execs.markCancelled(l, errCancelledByOperator); n > 0 {
		w.stats.lost.Add(int64(n))
		w.log.InfoContext(ctx, "job cancelled by an operator; its Handle's context is cancelled", "job_id", l.ID, "token", l.Token)
	}
}

// maxLostLookups bounds the jobs one lease renewal looks up to tell an
// operator's cancel from a rescue.
const maxLostLookups = 32

// splitCancelled sorts claims the lease renewal found lost into those an
// operator cancelled (the job is cancelled under the same claim token: no
// later claim took it) and the others (rescued after the lease expired,
// retried, ...), by looking the jobs up where the backend can
// (queue.JobReader). It is the fallback for a missed cancel notice, and for
// backends that send none, so that Handle sees queue.ErrCancelledByOperator
// either way.
func (w *Worker) splitCancelled(ctx context.Context, lost []queue.Lease) (cancelled, other []queue.Lease) {
	r, ok := w.src.(queue.JobReader)
	if !ok || len(lost) == 0 {
		return nil, lost
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for i, l := range lost {
		if i >= maxLostLookups {
			other = append(other, lost[i:]...)
			break
		}
		j, err := r.GetJob(ctx, l.ID)
		if err == nil && j.State == queue.StateCancelled && j.Token == l.Token {
			cancelled = append(cancelled, l)
		} else {
			other = append(other, l)
		}
	}
	return cancelled, other
}
