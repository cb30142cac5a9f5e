package queue

import (
	"context"
	"time"
)

// QueueLag says how long the oldest available job of a queue has waited to
// be claimed: the queue's lag. A queue with no available job has none.
type QueueLag struct {
	Queue string
	// Available is how many jobs of the queue are available now.
	Available int64
	// Oldest is when the oldest available job became due (its run time).
	Oldest time.Time
	// Lag is how long ago that was, as the backend's clock tells it (so
	// that a skewed client clock does not distort it); never negative.
	Lag time.Duration
}

// LagReader is the capability of backends that can tell each queue's lag:
// the age of its oldest available job. Queues with no available job are
// left out; the result is sorted by queue.
type LagReader interface {
	Lag(ctx context.Context) ([]QueueLag, error)
}
