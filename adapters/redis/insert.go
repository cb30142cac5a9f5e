package redis

import (
	"context"
	"fmt"

	"github.com/tasqhq/tasq/queue"
)

// Insert stores jobs atomically, all or none: the batch is checked here,
// then one script checks that no ID exists yet before it writes anything.
// Jobs without a delay become available at once and wake subscribed workers;
// the others are scheduled Delay after the insert, by the server's clock.
func (a *Adapter) Insert(ctx context.Context, jobs []queue.NewJob) error {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	if err := queue.CheckPlainJobs("redis", jobs); err != nil {
		return err
	}
	return a.insert(ctx, jobs)
}

// insert runs insertScript on jobs that passed Insert's checks.
func (a *Adapter) insert(ctx context.Context, jobs []queue.NewJob) error {
	args := make([]any, 0, 2+len(jobs)*insertFields)
	args = append(args, a.keys.prefix, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		delay := j.Delay.Microseconds()
		if j.Delay > 0 && delay == 0 {
			delay = 1 // a sub-microsecond delay still means "scheduled"
		}
		if delay < 0 {
			delay = 0
		}
		args = append(args, j.ID.String(), j.Kind, j.Queue, int64(j.Priority), string(j.Payload),
			j.MaxRetries, j.RetryDelay.Milliseconds(), j.Timeout.Milliseconds(), delay)
	}
	res, err := insertScript.Run(ctx, a.client, nil, args...).Slice()
	if err != nil {
		return a.wrap("insert jobs", err)
	}
	if len(res) == 2 && res[0] == "dup" {
		return fmt.Errorf("tasq/redis: insert jobs: %w: job %v (a reused ID, or a retried insert whose first try got through); nothing of this batch was stored",
			queue.ErrJobExists, res[1])
	}
	return nil
}
