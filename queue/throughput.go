package queue

import (
	"context"
	"time"
)

// ThroughputPoint counts the jobs that finished within one interval of a
// ThroughputReader's series: [At, At+step).
type ThroughputPoint struct {
	// At is the start of the interval.
	At time.Time
	// Completed counts the jobs that completed in the interval.
	Completed int64
	// Failed counts the jobs that failed for good in the interval: their
	// last attempt failed, or they were failed at once (a poison payload).
	// An attempt that will be retried is not counted: its job has not
	// finished.
	Failed int64
	// Cancelled counts the jobs cancelled in the interval, by an operator
	// or by their task.
	Cancelled int64
}

// ThroughputReader is the capability of backends that can count finished
// jobs per interval exactly, from an index on the finish time, instead of a
// sample of the jobs.
type ThroughputReader interface {
	// Throughput counts the jobs that finished at or after since, in
	// intervals of step starting at since: point i counts the finish times
	// in [since+i*step, since+(i+1)*step). Intervals in which no job
	// finished are left out; the points are in time order. Jobs that
	// retention deleted or archived are not counted, so a retention shorter
	// than the span reads low. step must be positive.
	//
	// The cost grows with the jobs finished since since (the backend reads
	// each once), not with the size of the table.
	Throughput(ctx context.Context, since time.Time, step time.Duration) ([]ThroughputPoint, error)
}
