package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// maintainBatch bounds the jobs one maintenance script moves (per kind of
// move), so a huge backlog is worked off without blocking Redis for long;
// Maintain runs up to maintainRounds scripts per call.
const (
	maintainBatch  = 1000
	maintainRounds = 5
)

// Claim implements queue.Source: one script pops up to limit available
// jobs of the queue, highest priority and oldest first, and leases them to
// workerID until the server's clock passes now + lease.
func (a *Adapter) Claim(ctx context.Context, queueName, workerID string, limit int, lease time.Duration) ([]*queue.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	res, err := claimScript.Run(ctx, a.client, nil, a.keys.prefix, queueName, workerID, limit, lease.Microseconds()).Slice()
	if err != nil {
		return nil, a.wrap("claim jobs", err)
	}
	jobs := make([]*queue.Job, 0, len(res))
	for _, r := range res {
		f, ok := r.([]any)
		if !ok || len(f) != 9 {
			return jobs, fmt.Errorf("tasq/redis: claim jobs: unexpected reply %v from the claim script", r)
		}
		s := make([]string, len(f))
		for i, v := range f {
			s[i], _ = v.(string)
		}
		var p parser
		j := &queue.Job{Kind: s[1], Queue: queueName, Payload: []byte(s[2])}
		j.ID = p.uuid(s[0])
		j.Priority = int16(p.int(s[3], 16))
		j.Attempt = int(p.int(s[4], 32))
		j.MaxRetries = int(p.int(s[5], 32))
		retryMS, timeoutMS, dispatched := p.int(s[6], 64), p.int(s[7], 64), p.int(s[8], 64)
		if p.err != nil {
			// The job stays leased to this worker; it comes back when the lease expires.
			return jobs, fmt.Errorf("tasq/redis: claim jobs: job %s has a malformed field (edited by hand?): %w", s[0], p.err)
		}
		j.RetryDelay = time.Duration(retryMS) * time.Millisecond
		j.Timeout = time.Duration(timeoutMS) * time.Millisecond
		j.DispatchedAt = time.UnixMicro(dispatched)
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// Finish implements queue.Source: one script applies the outcomes, each
// only while its attempt, by workerID, still holds the job.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 3+len(outcomes)*finishFields)
	args = append(args, a.keys.prefix, workerID, len(outcomes))
	for i := range outcomes {
		o := &outcomes[i]
		switch o.State {
		case queue.StateCompleted, queue.StateRetryable, queue.StateFailed, queue.StateCancelled, queue.StateAvailable, queue.StateScheduled:
		default:
			return 0, fmt.Errorf("tasq/redis: outcome for job %s has state %q, which no attempt can end in", o.ID, o.State)
		}
		args = append(args, o.ID.String(), o.Attempt, string(o.State), string(o.Result), o.Error, max(o.Delay.Microseconds(), 0))
	}
	n, err := finishScript.Run(ctx, a.client, nil, args...).Int()
	if err != nil {
		return 0, a.wrap("finish jobs", err)
	}
	return n, nil
}

// ExtendLeases implements queue.Source.
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, ids []uuid.UUID, lease time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, 3+len(ids))
	args = append(args, a.keys.prefix, workerID, lease.Microseconds())
	for _, id := range ids {
		args = append(args, id.String())
	}
	if err := extendScript.Run(ctx, a.client, nil, args...).Err(); err != nil {
		return a.wrap("extend leases", err)
	}
	return nil
}

// Maintain implements queue.Source: due scheduled/retryable jobs become
// available, and running jobs whose lease expired (by the server's clock)
// are handed back with a "lease expired" entry in their error history (the
// attempt they used still counts). Both wake the queues they touch.
func (a *Adapter) Maintain(ctx context.Context) (promoted, rescued int, err error) {
	for range maintainRounds {
		res, err := maintainScript.Run(ctx, a.client, nil, a.keys.prefix, maintainBatch).Int64Slice()
		if err != nil {
			return promoted, rescued, a.wrap("promote due jobs and rescue expired leases", err)
		}
		if len(res) != 2 {
			return promoted, rescued, fmt.Errorf("tasq/redis: maintain: unexpected reply %v from the maintenance script", res)
		}
		promoted += int(res[0])
		rescued += int(res[1])
		if res[0] < maintainBatch && res[1] < maintainBatch {
			break
		}
	}
	return promoted, rescued, nil
}

// parser converts stored fields, keeping the first error.
type parser struct{ err error }

func (p *parser) int(s string, bits int) int64 {
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil && p.err == nil {
		p.err = err
	}
	return n
}

func (p *parser) uuid(s string) uuid.UUID {
	id, err := uuid.Parse(s)
	if err != nil && p.err == nil {
		p.err = err
	}
	return id
}
