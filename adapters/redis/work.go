package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// ErrMalformedJob is wrapped by the error of a job hash with a field the
// adapter cannot read (a number that does not parse, edited by hand or by
// another program): Claim returns such a job with queue.Job.Invalid set to
// it, and GetJob and ListJobs return it.
var ErrMalformedJob = errors.New("tasq/redis: malformed job hash")

// maintainBatch bounds the jobs one maintenance script moves (per kind of
// move), so a huge backlog is worked off without blocking Redis for long;
// Maintain runs up to maintainRounds scripts per call.
const (
	maintainBatch  = 1000
	maintainRounds = 5
)

// leaseExpiredBefore and leaseExpiredAfter are queue.LeaseExpiredText
// around the worker's ID: the maintenance script, which alone knows the
// worker, puts them together.
var leaseExpiredBefore, leaseExpiredAfter = splitLeaseExpired()

func splitLeaseExpired() (before, after string) {
	const marker = "\x01worker\x01"
	before, after, ok := strings.Cut(queue.LeaseExpiredText(marker), marker)
	if !ok {
		return queue.LeaseExpiredText("?") + " [worker ", "]"
	}
	return before, after
}

// Claim implements queue.Source: one script claims up to req.Limit
// available jobs of req.Queue (of req.Kinds only, when given), highest
// priority and oldest first, leases them to req.WorkerID until the server's
// clock passes now + req.Lease, and gives each a new claim token. The script
// inspects a bounded number of entries per call (see claimScript), so jobs
// of other kinds ahead in line may make a claim come back short.
//
// A claimed job whose hash has a field that does not parse comes back with
// Job.Invalid set (wrapping ErrMalformedJob); the others come back as usual.
func (a *Adapter) Claim(ctx context.Context, req queue.ClaimRequest) ([]*queue.Job, error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	args := make([]any, 0, 6+len(req.Kinds))
	args = append(args, a.keys.prefix, req.Queue, req.WorkerID, req.Limit, req.Lease.Microseconds(), len(req.Kinds))
	for _, k := range req.Kinds {
		args = append(args, k)
	}
	res, err := claimScript.Run(ctx, a.client, nil, args...).Slice()
	if err != nil {
		return nil, a.wrap("claim jobs", err)
	}
	jobs := make([]*queue.Job, 0, len(res))
	for _, r := range res {
		f, ok := r.([]any)
		if !ok || len(f) != claimReplyFields {
			// Only a bug can get here; the jobs claimed come back when their leases expire.
			return jobs, fmt.Errorf("tasq/redis: claim jobs: unexpected reply %v from the claim script", r)
		}
		s := make([]string, len(f))
		for i, v := range f {
			s[i], _ = v.(string)
		}
		jobs = append(jobs, claimedJob(req.Queue, s))
	}
	return jobs, nil
}

// claimedJob reads one job of the claim script's reply; a field that does
// not parse makes it Invalid.
func claimedJob(queueName string, s []string) *queue.Job {
	var p parser
	j := &queue.Job{Kind: s[2], Queue: queueName, Payload: []byte(s[3])}
	j.ID = p.uuid("id", s[0])
	j.Token = p.int("token", s[1], 64)
	j.Priority = int16(p.int("priority", s[4], 16))
	j.Attempt = int(p.int("attempt", s[5], 32))
	j.MaxRetries = int(p.int("max_retries", s[6], 32))
	j.RetryDelay = p.millis("retry_delay_ms", s[7])
	j.Timeout = p.millis("timeout_ms", s[8])
	j.DispatchedAt = time.UnixMicro(p.int("dispatched_at_us", s[9], 64))
	if j.Kind == "" {
		p.problem("kind is empty")
	}
	if s[10] != "" {
		p.problem(s[10])
	}
	j.Invalid = p.err(s[0])
	return j
}

// Finish implements queue.Source: one script applies the outcomes, each
// only while the job is still running under the outcome's token for
// workerID. The Outcome methods decide what each does; the script only
// writes it. An outcome that fails its checks, or that the script cannot
// apply (a key of the wrong type), does not stop the others: it is stored
// as queue.FailedUnstorable instead, in a second script. When even that
// fails, Finish returns the count applied with an error naming those jobs.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	outs := make([]queue.Outcome, len(outcomes))
	for i, o := range outcomes {
		outs[i] = queue.Storable(o)
	}
	applied, refused, err := a.finish(ctx, workerID, outs)
	if err != nil {
		return 0, err
	}
	if len(refused) == 0 {
		return applied, nil
	}
	fallback := make([]queue.Outcome, len(refused))
	for k, r := range refused {
		fallback[k] = queue.FailedUnstorable(outs[r.index], r.err)
	}
	n, again, err := a.finish(ctx, workerID, fallback)
	applied += n
	if err != nil {
		return applied, err
	}
	if len(again) > 0 {
		msgs := make([]string, len(again))
		for k, r := range again {
			msgs[k] = fmt.Sprintf("job %s: %v", fallback[r.index].ID, r.err)
		}
		return applied, fmt.Errorf("tasq/redis: finish jobs on %s: %d outcome(s) could not be stored, not even as a failure (the jobs stay running until their leases expire): %s",
			a.addr, len(again), strings.Join(msgs, "; "))
	}
	return applied, nil
}

// refusal is an outcome the finish script could not apply.
type refusal struct {
	index int // in the batch, from 0
	err   error
}

// finish runs the finish script once.
func (a *Adapter) finish(ctx context.Context, workerID string, outs []queue.Outcome) (applied int, refused []refusal, err error) {
	args := make([]any, 0, 4+len(outs)*finishFields)
	args = append(args, a.keys.prefix, workerID, queue.MaxErrorHistory, len(outs))
	for i := range outs {
		o := &outs[i]
		result := "-"
		if o.State == queue.StateCompleted {
			result = "+" + string(o.Result)
		}
		args = append(args, o.ID.String(), strconv.FormatInt(o.Token, 10), string(o.State),
			flag(o.Finishes()), flag(o.Counts()), flag(o.RunsAgain()), o.Delay.Microseconds(), o.Error, result)
	}
	res, err := finishScript.Run(ctx, a.client, nil, args...).Slice()
	if err != nil {
		return 0, nil, a.wrap("finish jobs", err)
	}
	bad := func() (int, []refusal, error) {
		return 0, nil, fmt.Errorf("tasq/redis: finish jobs: unexpected reply %v from the finish script", res)
	}
	if len(res) != 2 {
		return bad()
	}
	n, ok1 := res[0].(int64)
	list, ok2 := res[1].([]any)
	if !ok1 || !ok2 || len(list)%2 != 0 {
		return bad()
	}
	for k := 0; k < len(list); k += 2 {
		i, ok1 := list[k].(int64)
		msg, ok2 := list[k+1].(string)
		if !ok1 || !ok2 || i < 1 || int(i) > len(outs) {
			return bad()
		}
		refused = append(refused, refusal{index: int(i) - 1, err: fmt.Errorf("the Redis script refused it: %s", msg)})
	}
	return int(n), refused, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ExtendLeases implements queue.Source: one script renews the leases that
// workerID still holds (the job running under the lease's token for that
// worker) and reports the others as lost.
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, leases []queue.Lease, d time.Duration) ([]queue.Lease, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 3+2*len(leases))
	args = append(args, a.keys.prefix, workerID, d.Microseconds())
	for _, l := range leases {
		args = append(args, l.ID.String(), strconv.FormatInt(l.Token, 10))
	}
	res, err := extendScript.Run(ctx, a.client, nil, args...).Int64Slice()
	if err != nil {
		return nil, a.wrap("extend leases", err)
	}
	var lost []queue.Lease
	for _, i := range res {
		if i < 1 || int(i) > len(leases) {
			return nil, fmt.Errorf("tasq/redis: extend leases: unexpected reply %v from the lease script", res)
		}
		lost = append(lost, leases[i-1])
	}
	return lost, nil
}

// Maintain implements queue.Maintainer: due scheduled/retryable jobs become
// available, and running jobs whose lease expired (by the server's clock)
// are handed back with queue.LeaseExpiredText in their error history (the
// attempt they used still counts). Both wake the queues they touch.
func (a *Adapter) Maintain(ctx context.Context) (promoted, rescued int, err error) {
	for range maintainRounds {
		res, err := maintainScript.Run(ctx, a.client, nil, a.keys.prefix, maintainBatch, leaseExpiredBefore, leaseExpiredAfter,
			queue.MaxErrorHistory).Int64Slice()
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

// parser converts stored fields, collecting what does not parse.
type parser struct{ problems []string }

func (p *parser) problem(s string) { p.problems = append(p.problems, s) }

func (p *parser) int(field, s string, bits int) int64 {
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		p.problem(fmt.Sprintf("%s %q is not a %d-bit integer", field, clip(s), bits))
	}
	return n
}

// millis reads a duration stored in milliseconds.
func (p *parser) millis(field, s string) time.Duration {
	ms := p.int(field, s, 64)
	switch {
	case ms < 0:
		p.problem(fmt.Sprintf("%s %d is negative", field, ms))
		return 0
	case ms > math.MaxInt64/int64(time.Millisecond):
		p.problem(fmt.Sprintf("%s %d is out of range", field, ms))
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func (p *parser) uuid(field, s string) uuid.UUID {
	id, err := uuid.Parse(s)
	if err != nil {
		p.problem(fmt.Sprintf("%s %q is not a UUID", field, clip(s)))
	}
	return id
}

// err is nil when every field parsed, else an error wrapping ErrMalformedJob.
func (p *parser) err(id string) error {
	if len(p.problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: job %s (edited by hand?): %s", ErrMalformedJob, clip(id), strings.Join(p.problems, "; "))
}

// clip shortens a stored value for a message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
