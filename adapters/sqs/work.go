package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// fenceTimeout is the visibility Finish gives a message before it writes
// the outcome: while it lasts nobody else can receive the message.
const fenceTimeout = 60 * time.Second

// refreshAge is the age after which a long-delayed message is re-sent
// rather than hidden again, so that it never reaches the queue's retention
// period (SQS's default is 4 days; queues the adapter creates keep 14).
const refreshAge = 3 * 24 * time.Hour

// pruneAfter is how long after its lease ran out a claimed message is
// forgotten when no outcome came for it.
const pruneAfter = 10 * time.Minute

// leaseKey names one attempt of one job.
type leaseKey struct {
	id      uuid.UUID
	attempt int
}

// leaseRec is a message this adapter received for a worker: the completion
// guard holds its receipt handle.
type leaseRec struct {
	key    leaseKey
	worker string
	queue  string // TasQ queue
	url    string // SQS queue URL
	msgID  string
	handle string
	env    *envelope // as received, with notes on lost attempts
	until  time.Time // when the visibility timeout runs out, as last set
	sent   bool      // the outcome's new message is sent; only the delete is left
}

// errStale says SQS refused a receipt handle: the message became visible
// again, was received by someone else, or is gone.
var errStale = errors.New("receipt handle no longer holds the message")

// Claim receives up to limit messages of queue q (MaxNumberOfMessages is at
// most 10 per call, so it calls as often as needed) with a visibility
// timeout of lease rounded up to whole seconds (at least 1s, at most 12h).
// Messages of long-delayed jobs that are not due yet are hidden again and
// not handed out; messages that are not TasQ jobs are moved to the failed
// queue.
func (a *Adapter) Claim(ctx context.Context, q, workerID string, limit int, lease time.Duration) ([]*queue.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := a.checkQueueName(q); err != nil {
		return nil, err
	}
	u, err := a.queueURL(ctx, q, false)
	if err != nil {
		return nil, err
	}
	vis := min(max(seconds(lease), 1), int32(maxVisibility/time.Second))
	var jobs []*queue.Job
	for round := 0; len(jobs) < limit && round < limit/chunkLimit+10; round++ {
		out, err := a.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl:            aws.String(u),
			MaxNumberOfMessages: int32(min(limit-len(jobs), chunkLimit)),
			VisibilityTimeout:   vis,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
		})
		if err != nil {
			if isNoQueue(err) {
				a.forgetURL(u)
			}
			if len(jobs) > 0 {
				return jobs, nil // they are leased now; the next claim meets the error again
			}
			return nil, fmt.Errorf("tasq/sqs: receive from SQS queue %q: %w", a.sqsName(q, false), err)
		}
		if len(out.Messages) == 0 {
			break
		}
		now := time.Now()
		for i := range out.Messages {
			if j := a.accept(ctx, q, u, workerID, &out.Messages[i], vis, now); j != nil {
				jobs = append(jobs, j)
			}
		}
	}
	return jobs, nil
}

// accept turns a received message into a claimed job, or deals with it and
// returns nil.
func (a *Adapter) accept(ctx context.Context, q, u, workerID string, m *types.Message, vis int32, now time.Time) *queue.Job {
	body, handle := aws.ToString(m.Body), aws.ToString(m.ReceiptHandle)
	e, err := decodeEnvelope(body)
	if errors.Is(err, errNewerFormat) {
		// Leave it to an upgraded worker: it comes back when the visibility
		// timeout runs out.
		a.log.Warn("skipping a job this version of TasQ cannot read; upgrade this worker", "queue", q, "message_id", aws.ToString(m.MessageId), "err", err)
		return nil
	}
	if err != nil {
		a.quarantine(ctx, q, u, m, err, now)
		return nil
	}
	e.Queue = q // the SQS queue it came from is the truth
	if e.NotBefore != nil {
		a.deferLong(ctx, q, u, m, e, now)
		return nil
	}
	received := 1
	if n, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && n > 0 {
		received = n
	}
	attempt := e.Attempts + received
	for lost := e.Attempts + 1; lost < attempt; lost++ {
		e.addError(lost, now, fmt.Sprintf("lease expired: attempt %d was not finished before its SQS visibility timeout ran out; its worker stopped renewing it (crashed or killed?)", lost))
	}
	rec := &leaseRec{
		key: leaseKey{e.ID, attempt}, worker: workerID, queue: q, url: u, msgID: aws.ToString(m.MessageId),
		handle: handle, env: e, until: now.Add(time.Duration(vis) * time.Second),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.leases[rec.key]; old != nil && old.msgID != rec.msgID {
		// A second copy of the same attempt (left by a failed delete): the
		// guard can track one. This copy comes back when its visibility
		// timeout runs out, and runs then if it is still there.
		return nil
	}
	for k := range a.leases {
		if k.id == e.ID && k.attempt < attempt {
			delete(a.leases, k) // SQS handed the job out again: that attempt is stale
		}
	}
	a.leases[rec.key] = rec
	return e.job(attempt)
}

// deferLong handles a long-delayed job's message: while more than the SQS
// delay cap remains it is hidden again (at most 12h at a time); then, or
// when it is getting old, it is replaced by a copy that SQS delays by the
// rest. The copy that finally runs is fresh, so its receive count counts
// attempts only.
func (a *Adapter) deferLong(ctx context.Context, q, u string, m *types.Message, e *envelope, now time.Time) {
	handle := aws.ToString(m.ReceiptHandle)
	remaining := e.NotBefore.Sub(now)
	age := time.Duration(0)
	if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		age = now.Sub(time.UnixMilli(ms))
	}
	if remaining > a.maxDelay && age < refreshAge {
		hide := min(remaining-a.maxDelay, maxHide)
		_, err := a.client.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(u), ReceiptHandle: aws.String(handle), VisibilityTimeout: max(seconds(hide), 1)})
		if err != nil {
			// It comes back when the claim's visibility timeout runs out.
			a.log.Warn("cannot hide a delayed job's message again", "queue", q, "job_id", e.ID, "err", err)
		}
		return
	}
	c := e.clone()
	delay := a.schedule(c, remaining, now)
	body, err := c.encode(a.maxSize)
	if err == nil {
		var errs []error
		if errs, err = a.sendChunk(ctx, q, false, []outMsg{{body: body, delay: delay}}); err == nil {
			err = errs[0]
		}
	}
	if err != nil {
		a.log.Warn("cannot re-send a delayed job's message; trying again when it comes back", "queue", q, "job_id", e.ID, "err", err)
		return
	}
	if _, err := a.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(u), ReceiptHandle: aws.String(handle)}); err != nil {
		a.log.Warn("re-sent a delayed job's message but cannot delete the old one; the job may run twice", "queue", q, "job_id", e.ID, "err", err)
	}
}

// quarantine moves a message that is not a TasQ job to the failed queue, so
// that it neither blocks the queue nor is lost.
func (a *Adapter) quarantine(ctx context.Context, q, u string, m *types.Message, why error, now time.Time) {
	body, handle := aws.ToString(m.Body), aws.ToString(m.ReceiptHandle)
	a.log.Warn("message is not a TasQ job; moving it to the failed queue", "queue", q, "message_id", aws.ToString(m.MessageId), "err", why)
	fin := now.UTC()
	rec := &envelope{V: envelopeVersion, Queue: q, State: queue.StateFailed, FinishedAt: &fin, Raw: body}
	rec.addError(0, now, fmt.Sprintf("unreadable message %s: %v", aws.ToString(m.MessageId), why))
	out, err := rec.encode(a.maxSize)
	if err != nil {
		rec.Raw = body[:min(len(body), a.maxSize/8)] + "... (truncated)"
		if out, err = rec.encode(a.maxSize); err != nil {
			a.log.Error("cannot move an unreadable message to the failed queue; it stays", "queue", q, "err", err)
			return
		}
	}
	errs, err := a.sendChunk(ctx, q, true, []outMsg{{body: out}})
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		a.log.Error("cannot move an unreadable message to the failed queue; it comes back after its visibility timeout", "queue", q, "err", err)
		return
	}
	if _, err := a.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(u), ReceiptHandle: aws.String(handle)}); err != nil {
		a.log.Error("moved an unreadable message to the failed queue but cannot delete it", "queue", q, "err", err)
	}
}

// held returns the adapter's claimed messages of workerID matching pick.
func (a *Adapter) held(workerID string, pick func(k leaseKey) bool) []*leaseRec {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*leaseRec
	for k, r := range a.leases {
		if r.worker == workerID && pick(k) {
			out = append(out, r)
		}
	}
	return out
}

// drop forgets claimed messages.
func (a *Adapter) drop(recs ...*leaseRec) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		if a.leases[r.key] == r {
			delete(a.leases, r.key)
		}
	}
}

// setVisibility changes the visibility timeout of recs' messages, ten per
// call. It returns per rec nil, errStale (SQS refused the receipt handle) or
// another error.
func (a *Adapter) setVisibility(ctx context.Context, recs []*leaseRec, secs int32) []error {
	return a.perQueue(recs, func(u string, part []*leaseRec) ([]error, error) {
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(part))
		for i, r := range part {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r.handle), VisibilityTimeout: secs}
		}
		out, err := a.client.ChangeMessageVisibilityBatch(ctx, &awssqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(u), Entries: entries})
		if err != nil {
			return nil, err
		}
		ok := make([]*string, len(out.Successful))
		for i, e := range out.Successful {
			ok[i] = e.Id
		}
		return batchResult(len(part), ok, out.Failed, "change visibility", true), nil
	})
}

// deleteMessages deletes recs' messages, ten per call.
func (a *Adapter) deleteMessages(ctx context.Context, recs []*leaseRec) []error {
	return a.perQueue(recs, func(u string, part []*leaseRec) ([]error, error) {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(part))
		for i, r := range part {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r.handle)}
		}
		out, err := a.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(u), Entries: entries})
		if err != nil {
			return nil, err
		}
		ok := make([]*string, len(out.Successful))
		for i, e := range out.Successful {
			ok[i] = e.Id
		}
		return batchResult(len(part), ok, out.Failed, "delete message", false), nil
	})
}

// perQueue runs call on recs grouped by queue, ten at a time, and returns
// an error per rec. A queue that no longer exists holds none of its
// messages: they are all stale.
func (a *Adapter) perQueue(recs []*leaseRec, call func(u string, part []*leaseRec) ([]error, error)) []error {
	errs := make([]error, len(recs))
	byURL := map[string][]int{}
	var order []string
	for i, r := range recs {
		if _, ok := byURL[r.url]; !ok {
			order = append(order, r.url)
		}
		byURL[r.url] = append(byURL[r.url], i)
	}
	for _, u := range order {
		idx := byURL[u]
		for from := 0; from < len(idx); from += chunkLimit {
			part := idx[from:min(from+chunkLimit, len(idx))]
			batch := make([]*leaseRec, len(part))
			for k, i := range part {
				batch[k] = recs[i]
			}
			res, err := call(u, batch)
			for k, i := range part {
				switch {
				case err != nil && isNoQueue(err):
					errs[i] = errStale
				case err != nil:
					errs[i] = fmt.Errorf("tasq/sqs: %w", err)
				default:
					errs[i] = res[k]
				}
			}
		}
	}
	return errs
}

// batchResult maps a batch call's answer to an error per entry. With
// senderStale, an entry refused for the request's fault (an invalid or
// outdated receipt handle) is errStale.
func batchResult(n int, okIDs []*string, failed []types.BatchResultErrorEntry, op string, senderStale bool) []error {
	errs := make([]error, n)
	answered := make([]bool, n)
	for _, id := range okIDs {
		if i, err := strconv.Atoi(aws.ToString(id)); err == nil && i >= 0 && i < n {
			answered[i] = true
		}
	}
	for _, f := range failed {
		if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i >= 0 && i < n {
			answered[i] = true
			if senderStale && f.SenderFault {
				errs[i] = errStale
			} else {
				errs[i] = batchEntryError(op, f)
			}
		}
	}
	for i, a := range answered {
		if !a && errs[i] == nil {
			errs[i] = fmt.Errorf("tasq/sqs: %s: SQS did not report the entry as done or failed", op)
		}
	}
	return errs
}

// Finish applies outcomes of attempts that workerID claimed through this
// adapter, and returns how many it applied. The completion guard:
//
//  1. The outcome's (job ID, attempt) must be a message this adapter
//     received for workerID, and SQS must not have handed it out again
//     since (a later claim through this adapter drops the older attempt).
//  2. Finish first sets the message's visibility timeout with the attempt's
//     receipt handle. SQS refuses that once the message became visible
//     again or was received by someone else (any process): the outcome is
//     then stale and not applied. After it, nobody else can receive the
//     message for a minute while the outcome is written.
//  3. completed and cancelled delete the message (a result is not kept:
//     SQS has nowhere to keep it); failed sends the job's final record to
//     the failed queue, then deletes it; retryable and a hand-back
//     (available/scheduled, the attempt un-counted) send the next copy of
//     the job with its delay, then delete the claimed one.
//
// If a step fails, Finish returns the error and keeps the claim, so that
// calling it again with the same outcomes resumes without sending twice.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	for i := range outcomes {
		switch outcomes[i].State {
		case queue.StateCompleted, queue.StateRetryable, queue.StateFailed, queue.StateCancelled, queue.StateAvailable, queue.StateScheduled:
		default:
			return 0, fmt.Errorf("tasq/sqs: outcome for job %s has state %q, which no attempt can end in", outcomes[i].ID, outcomes[i].State)
		}
	}
	type work struct {
		o   *queue.Outcome
		rec *leaseRec
	}
	var todo []work
	a.mu.Lock()
	seen := map[leaseKey]bool{}
	for i := range outcomes {
		k := leaseKey{outcomes[i].ID, outcomes[i].Attempt}
		if r := a.leases[k]; r != nil && r.worker == workerID && !seen[k] {
			seen[k] = true
			todo = append(todo, work{&outcomes[i], r})
		}
	}
	a.mu.Unlock()
	if len(todo) == 0 {
		return 0, nil
	}

	var problems []error
	// 1. Fence: hold the message while the outcome is written.
	recs := make([]*leaseRec, len(todo))
	for i, w := range todo {
		recs[i] = w.rec
	}
	fenced := todo[:0:0]
	for i, err := range a.setVisibility(ctx, recs, seconds(fenceTimeout)) {
		switch {
		case err == nil:
			fenced = append(fenced, todo[i])
		case errors.Is(err, errStale):
			a.drop(todo[i].rec)
		default:
			problems = append(problems, fmt.Errorf("job %s attempt %d: %w", todo[i].o.ID, todo[i].o.Attempt, err))
		}
	}

	// 2. Send what follows each outcome: the next copy, or the final record.
	now := time.Now()
	var targets []target
	msgs := map[target][]outMsg{}
	who := map[target][]int{} // indexes into fenced
	for i, w := range fenced {
		a.mu.Lock()
		sent := w.rec.sent
		a.mu.Unlock()
		if sent || w.o.State == queue.StateCompleted || w.o.State == queue.StateCancelled {
			continue
		}
		t, m, err := a.next(w.rec, w.o, now)
		if err != nil {
			problems = append(problems, err)
			fenced[i].rec = nil
			continue
		}
		if _, ok := msgs[t]; !ok {
			targets = append(targets, t)
		}
		msgs[t] = append(msgs[t], m)
		who[t] = append(who[t], i)
	}
	for _, t := range targets {
		ms := msgs[t]
		for _, c := range a.chunks(ms) {
			errs, err := a.sendChunk(ctx, t.queue, t.failed, ms[c[0]:c[1]])
			for k := c[0]; k < c[1]; k++ {
				w := &fenced[who[t][k]]
				e := err
				if e == nil {
					e = errs[k-c[0]]
				}
				if e != nil {
					problems = append(problems, fmt.Errorf("job %s attempt %d: %w", w.o.ID, w.o.Attempt, e))
					w.rec = nil
					continue
				}
				a.mu.Lock()
				w.rec.sent = true
				a.mu.Unlock()
			}
		}
	}

	// 3. Delete the claimed messages whose outcome is written.
	var del []*leaseRec
	for _, w := range fenced {
		if w.rec != nil {
			del = append(del, w.rec)
		}
	}
	applied := 0
	for i, err := range a.deleteMessages(ctx, del) {
		if err != nil {
			problems = append(problems, fmt.Errorf("job %s attempt %d: %w", del[i].key.id, del[i].key.attempt, err))
			continue
		}
		applied++
		a.drop(del[i])
	}
	if len(problems) > 0 {
		return applied, fmt.Errorf("tasq/sqs: finish jobs: %d of %d outcomes not written: %w", len(problems), len(outcomes), errors.Join(problems...))
	}
	return applied, nil
}

// target is where a message goes: TasQ queue's SQS queue, or its failed
// queue.
type target struct {
	queue  string
	failed bool
}

// next builds the message that follows outcome o of rec's attempt: the
// job's next copy, or its final record for the failed queue.
func (a *Adapter) next(rec *leaseRec, o *queue.Outcome, now time.Time) (t target, m outMsg, err error) {
	c := rec.env.clone()
	if o.Error != "" {
		c.addError(o.Attempt, now, o.Error)
	}
	t.queue = rec.queue
	switch o.State {
	case queue.StateFailed:
		t.failed = true
		c.Attempts, c.State, c.NotBefore = o.Attempt, queue.StateFailed, nil
		fin := now.UTC()
		c.FinishedAt = &fin
	case queue.StateRetryable:
		c.Attempts = o.Attempt
		m.delay = a.schedule(c, o.Delay, now)
	case queue.StateAvailable, queue.StateScheduled:
		c.Attempts = o.Attempt - 1 // a hand-back does not count
		d := o.Delay
		if o.State == queue.StateAvailable {
			d = 0
		}
		m.delay = a.schedule(c, d, now)
	}
	m.body, err = c.encode(a.maxSize)
	if err != nil && len(c.Errors) > 1 {
		c.Errors = c.Errors[len(c.Errors)-1:] // the history must not stop the job
		m.body, err = c.encode(a.maxSize)
	}
	if err != nil {
		return t, m, fmt.Errorf("job %s attempt %d: %w", o.ID, o.Attempt, err)
	}
	return t, m, nil
}

// ExtendLeases sets the visibility timeout of workerID's claimed messages
// to lease (rounded up to whole seconds, at most 12h). Jobs the worker no
// longer holds are skipped, as are attempts SQS refuses to extend (they are
// stale). SQS limits a message's visibility to 12 hours from its receive,
// so that is the longest a job can run on SQS.
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, ids []uuid.UUID, lease time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	want := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	recs := a.held(workerID, func(k leaseKey) bool { return want[k.id] })
	if len(recs) == 0 {
		return nil
	}
	vis := min(max(seconds(lease), 1), int32(maxVisibility/time.Second))
	until := time.Now().Add(time.Duration(vis) * time.Second)
	var problems []error
	for i, err := range a.setVisibility(ctx, recs, vis) {
		switch {
		case err == nil:
			a.mu.Lock()
			recs[i].until = until
			a.mu.Unlock()
		case errors.Is(err, errStale):
			a.drop(recs[i])
		default:
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("tasq/sqs: extend leases: %w", errors.Join(problems...))
	}
	return nil
}

// Maintain has nothing to move on SQS and returns zeros: SQS itself makes
// delayed messages visible when they are due, and makes a claimed message
// visible again when its visibility timeout (the lease) runs out. It only
// forgets claims whose lease ran out more than ten minutes ago without an
// outcome.
func (a *Adapter) Maintain(ctx context.Context) (promoted, rescued int, err error) {
	cutoff := time.Now().Add(-pruneAfter)
	a.mu.Lock()
	for k, r := range a.leases {
		if r.until.Before(cutoff) {
			delete(a.leases, k)
		}
	}
	a.mu.Unlock()
	return 0, 0, nil
}
