package queue

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// MaxStartsLimit is the largest Limit.MaxStarts accepted: the backend keeps
// the start times of the last MaxStarts claims to enforce it exactly.
const MaxStartsLimit = 10000

// Limit bounds the jobs of a queue (or of one key within it) across every
// worker and machine. A zero field is no limit.
type Limit struct {
	// MaxRunning is the most jobs that may run at once.
	MaxRunning int
	// MaxStarts is the most jobs that may start within any interval of
	// length Per (a sliding window: wherever the interval falls). Set both
	// or neither.
	MaxStarts int
	Per       time.Duration
}

// IsZero reports whether l limits nothing.
func (l Limit) IsZero() bool { return l.MaxRunning == 0 && l.MaxStarts == 0 && l.Per == 0 }

func (l Limit) check(what string) error {
	switch {
	case l.MaxRunning < 0:
		return fmt.Errorf("%w: %s.MaxRunning is %d; use a positive count, or 0 for no limit", ErrInvalidConfig, what, l.MaxRunning)
	case l.MaxStarts < 0 || l.MaxStarts > MaxStartsLimit:
		return fmt.Errorf("%w: %s.MaxStarts is %d; use 1 to %d (queue.MaxStartsLimit), or 0 for no limit", ErrInvalidConfig, what, l.MaxStarts, MaxStartsLimit)
	case l.MaxStarts > 0 && l.Per < time.Millisecond:
		return fmt.Errorf("%w: %s.MaxStarts is %d but Per is %v; give the interval (at least 1ms) the starts are counted in", ErrInvalidConfig, what, l.MaxStarts, l.Per)
	case l.MaxStarts == 0 && l.Per != 0:
		return fmt.Errorf("%w: %s.Per is %v but MaxStarts is 0; set MaxStarts too, or leave Per 0", ErrInvalidConfig, what, l.Per)
	case l.Per%time.Millisecond != 0:
		return fmt.Errorf("%w: %s.Per is %v; use whole milliseconds", ErrInvalidConfig, what, l.Per)
	}
	return nil
}

// QueueLimits are the global limits of one queue: for the queue as a whole,
// and for each key, the value of a payload field (for example a customer
// id), so that one customer's burst cannot take every slot.
type QueueLimits struct {
	// Total limits the whole queue.
	Total Limit
	// KeyField names the payload field whose value is a job's key: a
	// top-level field ("customer_id") or a path through nested objects
	// ("customer.id"). A job whose payload lacks it has the empty key, which
	// all such jobs share. Required when PerKey limits anything.
	KeyField string
	// PerKey limits each key on its own.
	PerKey Limit
}

// IsZero reports whether q limits nothing.
func (q QueueLimits) IsZero() bool { return q.Total.IsZero() && q.PerKey.IsZero() && q.KeyField == "" }

// KeyPath returns KeyField split at its dots, as the backend walks the payload.
func (q QueueLimits) KeyPath() []string {
	if q.KeyField == "" {
		return nil
	}
	return strings.Split(q.KeyField, ".")
}

// Check reports whether q can be applied, naming the field at fault.
func (q QueueLimits) Check() error {
	if err := q.Total.check("Total"); err != nil {
		return err
	}
	if err := q.PerKey.check("PerKey"); err != nil {
		return err
	}
	switch {
	case q.PerKey.IsZero() && q.KeyField != "":
		return fmt.Errorf("%w: KeyField is %q but PerKey limits nothing; set PerKey.MaxRunning or PerKey.MaxStarts", ErrInvalidConfig, q.KeyField)
	case !q.PerKey.IsZero() && q.KeyField == "":
		return fmt.Errorf("%w: PerKey limits need KeyField, the payload field whose value is a job's key (e.g. \"customer_id\")", ErrInvalidConfig)
	}
	for _, part := range q.KeyPath() {
		if part == "" {
			return fmt.Errorf("%w: KeyField %q has an empty part; write a field name, or names joined by single dots", ErrInvalidConfig, q.KeyField)
		}
	}
	return nil
}

// QueueState is what a QueueController reports about one queue that is
// paused or limited.
type QueueState struct {
	Name string
	// Paused says workers claim nothing from the queue; PausedAt is since when.
	Paused   bool
	PausedAt time.Time
	Limits   QueueLimits
}

// QueueController is the capability of backends whose claims honour queue
// pauses and global limits. The claim itself checks them, so a worker that
// has not heard of a change cannot get round it; a resume also wakes the
// queue's workers.
type QueueController interface {
	// PauseQueue stops every worker from claiming jobs of the queue. Jobs
	// already running finish. Pausing a paused queue changes nothing.
	PauseQueue(ctx context.Context, name string) error
	// ResumeQueue lets workers claim jobs of the queue again.
	ResumeQueue(ctx context.Context, name string) error
	// SetQueueLimits replaces the queue's limits; zero QueueLimits removes
	// them.
	SetQueueLimits(ctx context.Context, name string, l QueueLimits) error
	// QueueStates lists the queues that are paused or limited, by name.
	QueueStates(ctx context.Context) ([]QueueState, error)
}
