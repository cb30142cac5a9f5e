package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
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
// forgotten when no outcome came for it; Claim looks for such claims at
// most every pruneEvery.
const (
	pruneAfter = 10 * time.Minute
	pruneEvery = time.Minute
)

// leaseKey names one execution of one job: its ID and claim token.
type leaseKey struct {
	id    uuid.UUID
	token int64
}

// leaseRec is a message this adapter received for a worker: the completion
// guard holds its receipt handle.
type leaseRec struct {
	key     leaseKey
	attempt int // the execution's attempt (Job.Attempt)
	worker  string
	queue   string // TasQ queue
	url     string // SQS queue URL
	msgID   string
	handle  string
	env     *envelope // as received, with notes on lost attempts
	until   time.Time // when the visibility timeout runs out, as last set
	sent    bool      // the outcome's new message is sent; only the delete is left
}

// errStale says SQS refused a receipt handle: the message became visible
// again, was received by someone else, or is gone.
var errStale = errors.New("receipt handle no longer holds the message")

// Claim receives up to req.Limit messages of req.Queue (MaxNumberOfMessages
// is at most 10 per call, so it calls as often as needed) with a visibility
// timeout of req.Lease rounded up to whole seconds (at least 1s, at most
// 12h). Each claimed job gets Attempt = the envelope's attempts plus the
// message's ApproximateReceiveCount, and Token = the envelope's token base
// plus the same count.
//
// What else a receive may bring is dealt with here and not handed out, and
// none of it stops the rest of the claim: messages of long-delayed jobs
// that are not due yet are hidden again; messages that are not TasQ jobs are
// moved to the failed queue (quarantine); messages written by a newer TasQ
// are left for an upgraded worker.
//
// SQS cannot select messages by kind, so req.Kinds is applied after the
// receive: a job of another kind is put back at once, as a fresh copy
// carrying its attempts and claim token (then the received message is
// deleted). Each such job costs a receive, a send and a delete. A fresh
// copy rather than ChangeMessageVisibility(0) because SQS counts every
// receive of a message in ApproximateReceiveCount, which is how the adapter
// counts attempts: a job that workers without its kind received again and
// again would reach the worker that knows it with its retry budget spent.
// Only when the copy cannot be sent is the message made visible again with
// ChangeMessageVisibility(0).
func (a *Adapter) Claim(ctx context.Context, req queue.ClaimRequest) ([]*queue.Job, error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	if err := a.checkQueueName(req.Queue); err != nil {
		return nil, err
	}
	u, err := a.queueURL(ctx, req.Queue, false)
	if err != nil {
		return nil, err
	}
	var kinds map[string]bool
	if len(req.Kinds) > 0 {
		kinds = make(map[string]bool, len(req.Kinds))
		for _, k := range req.Kinds {
			kinds[k] = true
		}
	}
	a.prune(time.Now())
	vis := min(max(seconds(req.Lease), 1), int32(maxVisibility/time.Second))
	var jobs []*queue.Job
	putBack := map[uuid.UUID]bool{} // jobs put back by this claim
	for round := 0; len(jobs) < req.Limit && round < req.Limit/chunkLimit+10; round++ {
		out, err := a.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl:            aws.String(u),
			MaxNumberOfMessages: int32(min(req.Limit-len(jobs), chunkLimit)),
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
			return nil, fmt.Errorf("tasq/sqs: receive from SQS queue %q: %w", a.sqsName(req.Queue, false), err)
		}
		if len(out.Messages) == 0 {
			break
		}
		now := time.Now()
		var back []*otherKind
		again := false
		for i := range out.Messages {
			j, ok := a.accept(ctx, req.Queue, u, req.WorkerID, &out.Messages[i], vis, now, kinds)
			switch {
			case j != nil:
				jobs = append(jobs, j)
			case ok != nil:
				again = again || putBack[ok.env.ID]
				putBack[ok.env.ID] = true
				back = append(back, ok)
			}
		}
		if len(back) > 0 {
			a.putBack(ctx, req.Queue, u, back)
		}
		if again {
			break // receiving the copies this claim put back: the rest is of other kinds
		}
	}
	return jobs, nil
}

// otherKind is a received job of a kind the claim did not ask for.
type otherKind struct {
	m     *types.Message
	env   *envelope // with notes on lost attempts
	token int64     // the receive's token, kept by the copy
	tries int       // attempts used, lost ones included
}

// receiveCount returns the message's ApproximateReceiveCount (at least 1).
func receiveCount(m *types.Message) int {
	if n, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && n > 0 {
		return n
	}
	return 1
}

// accept turns a received message into a claimed job; or into a job of
// another kind to put back; or deals with it and returns neither.
func (a *Adapter) accept(ctx context.Context, q, u, workerID string, m *types.Message, vis int32, now time.Time, kinds map[string]bool) (*queue.Job, *otherKind) {
	body, handle := aws.ToString(m.Body), aws.ToString(m.ReceiptHandle)
	e, err := decodeEnvelope(body)
	if errors.Is(err, errNewerFormat) {
		// Leave it to an upgraded worker: it comes back when the visibility
		// timeout runs out.
		a.log.WarnContext(ctx, "skipping a job this version of TasQ cannot read; upgrade this worker", "queue", q, "message_id", aws.ToString(m.MessageId), "err", err)
		return nil, nil
	}
	if err != nil {
		a.quarantine(ctx, q, u, m, err, now)
		return nil, nil
	}
	e.Queue = q // the SQS queue it came from is the truth
	if e.NotBefore != nil {
		a.deferLong(ctx, q, u, m, e, now)
		return nil, nil
	}
	received := receiveCount(m)
	attempt := e.Attempts + received
	token := e.TokenBase + int64(received)
	e.noteLostAttempts(attempt, now)
	if kinds != nil && !kinds[e.Kind] {
		return nil, &otherKind{m: m, env: e, token: token, tries: attempt - 1}
	}
	rec := &leaseRec{
		key: leaseKey{e.ID, token}, attempt: attempt, worker: workerID, queue: q, url: u, msgID: aws.ToString(m.MessageId),
		handle: handle, env: e, until: now.Add(time.Duration(vis) * time.Second),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.leases[rec.key]; old != nil && old.msgID != rec.msgID {
		// A second copy of the job with the same token (left by a failed
		// delete): the guard can track one. This copy comes back when its
		// visibility timeout runs out, with a larger token, and runs then
		// if it is still there.
		return nil, nil
	}
	for k := range a.leases {
		if k.id == e.ID && k.token < token {
			delete(a.leases, k) // SQS handed the job out again: that execution is stale
		}
	}
	a.leases[rec.key] = rec
	return e.job(attempt, token), nil
}

// putBack returns jobs of kinds the claim did not ask for to the queue, as
// fresh copies visible at once that keep the jobs' attempts (lost ones
// included) and claim tokens, and deletes the received messages. A message
// whose copy cannot be sent is made visible again instead.
func (a *Adapter) putBack(ctx context.Context, q, u string, jobs []*otherKind) {
	msgs := make([]outMsg, 0, len(jobs))
	sendable := make([]*otherKind, 0, len(jobs))
	var visible []*leaseRec
	for _, j := range jobs {
		c := j.env.clone()
		c.Attempts, c.TokenBase, c.NotBefore = j.tries, j.token, nil
		body, err := a.encodeFit(c)
		if err != nil {
			a.log.WarnContext(ctx, "cannot copy a job of another kind to put it back; making it visible again", "queue", q, "job_id", j.env.ID, "err", err)
			visible = append(visible, &leaseRec{url: u, handle: aws.ToString(j.m.ReceiptHandle)})
			continue
		}
		msgs = append(msgs, outMsg{body: body})
		sendable = append(sendable, j)
	}
	var del []*leaseRec
	for k, err := range a.sendEach(ctx, target{queue: q}, msgs) {
		rec := &leaseRec{url: u, handle: aws.ToString(sendable[k].m.ReceiptHandle)}
		if err != nil {
			a.log.WarnContext(ctx, "cannot put back a job of another kind as a fresh copy; making it visible again", "queue", q, "job_id", sendable[k].env.ID, "err", err)
			visible = append(visible, rec)
			continue
		}
		del = append(del, rec)
	}
	for _, err := range a.deleteMessages(ctx, del) {
		if err != nil {
			a.log.WarnContext(ctx, "put back a job of another kind but cannot delete the received message; the job may run twice", "queue", q, "err", err)
		}
	}
	for _, err := range a.setVisibility(ctx, visible, 0) {
		if err != nil && !errors.Is(err, errStale) {
			a.log.WarnContext(ctx, "cannot make a job of another kind visible again; it comes back after the claim's visibility timeout", "queue", q, "err", err)
		}
	}
}

// deferLong handles a long-delayed job's message: while more than the SQS
// delay cap remains it is hidden again (at most 12h at a time); then, or
// when it is getting old, it is replaced by a copy that SQS delays by the
// rest. The copy that finally runs is fresh, so its receive count counts
// claims only; it keeps the job's attempts and token base.
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
			a.log.WarnContext(ctx, "cannot hide a delayed job's message again", "queue", q, "job_id", e.ID, "err", err)
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
		a.log.WarnContext(ctx, "cannot re-send a delayed job's message; trying again when it comes back", "queue", q, "job_id", e.ID, "err", err)
		return
	}
	if _, err := a.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(u), ReceiptHandle: aws.String(handle)}); err != nil {
		a.log.WarnContext(ctx, "re-sent a delayed job's message but cannot delete the old one; the job may run twice", "queue", q, "job_id", e.ID, "err", err)
	}
}

// quarantine moves a message that is not a TasQ job to the failed queue, so
// that it neither blocks the queue nor is lost. It only logs what goes
// wrong: one unreadable message must not stop the claim it came in.
func (a *Adapter) quarantine(ctx context.Context, q, u string, m *types.Message, why error, now time.Time) {
	body, handle := aws.ToString(m.Body), aws.ToString(m.ReceiptHandle)
	a.log.WarnContext(ctx, "message is not a TasQ job; moving it to the failed queue", "queue", q, "message_id", aws.ToString(m.MessageId), "err", why)
	fin := now.UTC()
	rec := &envelope{V: envelopeVersion, Queue: q, State: queue.StateFailed, FinishedAt: &fin, Raw: body}
	rec.addError(0, now, fmt.Sprintf("unreadable message %s: %v", aws.ToString(m.MessageId), why))
	out, err := rec.encode(a.maxSize)
	if err != nil {
		// Too large with the JSON escapes: keep the start, cut at a
		// character boundary so that the text stays valid.
		cut := min(len(body), a.maxSize/8)
		for cut > 0 && cut < len(body) && !utf8.RuneStart(body[cut]) {
			cut--
		}
		rec.Raw = body[:cut] + "... (truncated)"
		if out, err = rec.encode(a.maxSize); err != nil {
			a.log.ErrorContext(ctx, "cannot move an unreadable message to the failed queue; it stays", "queue", q, "message_id", aws.ToString(m.MessageId), "err", err)
			return
		}
	}
	errs, err := a.sendChunk(ctx, q, true, []outMsg{{body: out}})
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		a.log.ErrorContext(ctx, "cannot move an unreadable message to the failed queue; it comes back after its visibility timeout", "queue", q, "message_id", aws.ToString(m.MessageId), "err", err)
		return
	}
	if _, err := a.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(u), ReceiptHandle: aws.String(handle)}); err != nil {
		a.log.ErrorContext(ctx, "moved an unreadable message to the failed queue but cannot delete it", "queue", q, "message_id", aws.ToString(m.MessageId), "err", err)
	}
}

// prune forgets claims whose lease ran out more than pruneAfter ago without
// an outcome (their worker gave up on them), at most every pruneEvery.
func (a *Adapter) prune(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.pruned) < pruneEvery {
		return
	}
	a.pruned = now
	cutoff := now.Add(-pruneAfter)
	for k, r := range a.leases {
		if r.until.Before(cutoff) {
			delete(a.leases, k)
		}
	}
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

// Finish applies outcomes of executions that workerID claimed through this
// adapter, and returns how many it applied. The completion guard:
//
//  1. The outcome's (job ID, claim token) must be a message this adapter
//     received for workerID, and SQS must not have handed the job out again
//     since (a later claim through this adapter forgets the older token).
//  2. Finish first sets the message's visibility timeout with the
//     execution's receipt handle. SQS refuses that once the message became
//     visible again or was received by someone else (any process): the
//     outcome is then stale and not applied. After it, nobody else can
//     receive the message for a minute while the outcome is written.
//  3. The outcome is applied with its methods: one that finishes the job
//     (queue.Outcome.Finishes) deletes the message, and a failed one first
//     sends the job's final record, with its error history, to the failed
//     queue (a result is not kept: SQS has nowhere to keep it). Any other
//     sends the job's next copy, with the attempt counted or taken back
//     (Counts), the delay when it runs again (RunsAgain), the error text
//     added to the history and the execution's claim token as the copy's
//     token base; then deletes the claimed message.
//
// One outcome's failure does not stop the others. An outcome whose message
// SQS refuses for its content (a batch entry rejected as the sender's
// fault, or a message too large even with its error history cut) is stored
// as queue.FailedUnstorable instead: the job's final record says why. An
// outcome that fails for any other reason (SQS or the network failing,
// throttling) is not applied: it is named in the returned error and its
// claim is kept, so that calling Finish again with the same outcomes
// resumes where it stopped without sending twice. Every outcome goes through
// queue.Storable first, so one that cannot be stored fails its own job.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	outs := make([]queue.Outcome, len(outcomes))
	for i, o := range outcomes {
		outs[i] = queue.Storable(o)
	}
	outcomes = outs
	var todo []*finishing
	a.mu.Lock()
	seen := map[leaseKey]bool{}
	for _, o := range outcomes {
		k := leaseKey{o.ID, o.Token}
		if r := a.leases[k]; r != nil && r.worker == workerID && !seen[k] {
			seen[k] = true
			todo = append(todo, &finishing{o: o, rec: r})
		}
	}
	a.mu.Unlock()
	if len(todo) == 0 {
		return 0, nil
	}

	var problems []error
	fail := func(f *finishing, err error) {
		problems = append(problems, fmt.Errorf("job %s (token %d, %s): %w", f.o.ID, f.o.Token, f.o.State, err))
	}

	// 1. Fence: hold the messages while the outcomes are written.
	recs := make([]*leaseRec, len(todo))
	for i, f := range todo {
		recs[i] = f.rec
	}
	var fenced []*finishing
	until := time.Now().Add(fenceTimeout)
	for i, err := range a.setVisibility(ctx, recs, seconds(fenceTimeout)) {
		switch {
		case err == nil:
			a.mu.Lock()
			todo[i].rec.until = until
			a.mu.Unlock()
			fenced = append(fenced, todo[i])
		case errors.Is(err, errStale):
			a.drop(todo[i].rec)
		default:
			fail(todo[i], err)
		}
	}

	// 2. Send what follows each outcome: the next copy, or the final record.
	now := time.Now()
	var ready, send []*finishing
	for _, f := range fenced {
		a.mu.Lock()
		sent := f.rec.sent
		a.mu.Unlock()
		if sent || (f.o.Finishes() && f.o.State != queue.StateFailed) {
			ready = append(ready, f) // nothing (more) to send: delete
			continue
		}
		if err := a.prepare(f, now); err != nil {
			fail(f, err)
			continue
		}
		send = append(send, f)
	}
	for round := 0; len(send) > 0; round++ {
		var retry []*finishing
		for f, err := range a.sendOutcomes(ctx, send) {
			switch {
			case err == nil:
				a.mu.Lock()
				f.rec.sent = true
				a.mu.Unlock()
				ready = append(ready, f)
			case round == 0 && !f.substituted && isDataError(err):
				// SQS refused this message for its content: store that
				// the outcome could not be stored instead.
				f.o, f.substituted = queue.FailedUnstorable(f.o, err), true
				if err := a.prepare(f, now); err != nil {
					fail(f, err)
					continue
				}
				retry = append(retry, f)
			default:
				fail(f, err)
			}
		}
		send = retry
	}

	// 3. Delete the claimed messages whose outcome is written.
	del := make([]*leaseRec, len(ready))
	for i, f := range ready {
		del[i] = f.rec
	}
	applied := 0
	for i, err := range a.deleteMessages(ctx, del) {
		if err != nil {
			fail(ready[i], err)
			continue
		}
		applied++
		a.drop(del[i])
	}
	if len(problems) > 0 {
		return applied, fmt.Errorf("tasq/sqs: finish jobs: %d of %d outcomes not written (their claims are kept; Finish them again): %w", len(problems), len(outcomes), errors.Join(problems...))
	}
	return applied, nil
}

// finishing is an outcome on its way through Finish.
type finishing struct {
	o           queue.Outcome // substituted by queue.FailedUnstorable when SQS refused it
	substituted bool
	rec         *leaseRec
	to          target
	msg         outMsg
}

// prepare builds the message that follows f's outcome.
func (a *Adapter) prepare(f *finishing, now time.Time) error {
	t, m, err := a.next(f.rec, f.o, now)
	if err != nil && !f.substituted {
		// The job cannot be stored as the outcome says (too large even with
		// its error history cut): fail it with the reason.
		f.o, f.substituted = queue.FailedUnstorable(f.o, err), true
		t, m, err = a.next(f.rec, f.o, now)
	}
	if err != nil {
		return err
	}
	f.to, f.msg = t, m
	return nil
}

// sendOutcomes sends the prepared messages of fs, grouped by target, and
// returns the error of each (nil: sent).
func (a *Adapter) sendOutcomes(ctx context.Context, fs []*finishing) map[*finishing]error {
	res := make(map[*finishing]error, len(fs))
	var targets []target
	byTarget := map[target][]*finishing{}
	for _, f := range fs {
		if _, ok := byTarget[f.to]; !ok {
			targets = append(targets, f.to)
		}
		byTarget[f.to] = append(byTarget[f.to], f)
	}
	for _, t := range targets {
		group := byTarget[t]
		msgs := make([]outMsg, len(group))
		for i, f := range group {
			msgs[i] = f.msg
		}
		for i, err := range a.sendEach(ctx, t, msgs) {
			res[group[i]] = err
		}
	}
	return res
}

// target is where a message goes: TasQ queue's SQS queue, or its failed
// queue.
type target struct {
	queue  string
	failed bool
}

// next builds the message that follows outcome o of rec's execution: the
// job's next copy, or its final record for the failed queue. It applies the
// outcome with its methods and decides nothing itself.
func (a *Adapter) next(rec *leaseRec, o queue.Outcome, now time.Time) (t target, m outMsg, err error) {
	c := rec.env.clone()
	if o.Error != "" {
		c.addError(rec.attempt, now, o.Error)
	}
	c.TokenBase = rec.key.token // the copy's claims get larger tokens
	c.Attempts = rec.attempt
	if !o.Counts() {
		c.Attempts-- // a hand-back takes the attempt back
	}
	t.queue = rec.queue
	c.NotBefore = nil
	if o.Finishes() {
		// The final record (only failed outcomes have one).
		t.failed = true
		c.State = o.State
		fin := now.UTC()
		c.FinishedAt = &fin
	} else {
		var delay time.Duration
		if o.RunsAgain() {
			delay = o.Delay
		}
		m.delay = a.schedule(c, delay, now)
	}
	if m.body, err = a.encodeFit(c); err != nil {
		return t, m, err
	}
	return t, m, nil
}

// encodeFit encodes e, cutting its error history (see envelope.shrink)
// while the message is too large: the history must not stop the job.
func (a *Adapter) encodeFit(e *envelope) (string, error) {
	for {
		body, err := e.encode(a.maxSize)
		if err == nil || !e.shrink() {
			return body, err
		}
	}
}

// sendEach sends msgs to t in as few calls as it can and returns an error
// per message (nil: sent). When SQS refuses a whole call for its content,
// the call's messages are sent one by one, so that one bad message does not
// fail the others.
func (a *Adapter) sendEach(ctx context.Context, t target, msgs []outMsg) []error {
	errs := make([]error, len(msgs))
	for _, c := range a.chunks(msgs) {
		part := msgs[c[0]:c[1]]
		res, err := a.sendChunk(ctx, t.queue, t.failed, part)
		if err != nil && len(part) > 1 && isDataError(err) {
			for k := range part {
				r, err := a.sendChunk(ctx, t.queue, t.failed, part[k:k+1])
				if err == nil {
					err = r[0]
				}
				errs[c[0]+k] = err
			}
			continue
		}
		for k := range part {
			if err != nil {
				errs[c[0]+k] = err
			} else {
				errs[c[0]+k] = res[k]
			}
		}
	}
	return errs
}

// isDataError reports whether SQS refused a message (or a call) for its
// content: a batch entry refused as the sender's fault, or a call refused
// as too long or with invalid contents. Throttling and KMS or access
// errors are not about the message and do not count.
func isDataError(err error) bool {
	var ee *entryError
	if errors.As(err, &ee) {
		c := strings.ToLower(ee.code)
		return ee.sender && !strings.Contains(c, "throttl") && !strings.Contains(c, "kms") && !strings.Contains(c, "denied")
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		c := apiErr.ErrorCode()
		for _, data := range []string{"BatchRequestTooLong", "InvalidMessageContents", "MessageTooLong", "InvalidParameterValue"} {
			if strings.Contains(c, data) {
				return true
			}
		}
	}
	return false
}

// ExtendLeases sets the visibility timeout of workerID's claimed messages
// to d (rounded up to whole seconds, at most 12h) and returns the leases
// the worker no longer holds: those the adapter does not know for workerID
// (finished, never claimed here, replaced by a newer claim of the job) and
// those SQS refuses to extend (the message became visible again, was
// received by someone else, or is gone). A lease that could not be renewed
// for another reason is neither renewed nor lost; the error says why. SQS
// limits a message's visibility to 12 hours from its receive, so that is
// the longest a job can run on SQS.
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, leases []queue.Lease, d time.Duration) (lost []queue.Lease, err error) {
	if len(leases) == 0 {
		return nil, nil
	}
	var recs []*leaseRec
	var held []queue.Lease
	a.mu.Lock()
	seen := make(map[leaseKey]bool, len(leases))
	for _, l := range leases {
		k := leaseKey{l.ID, l.Token}
		if seen[k] {
			continue
		}
		seen[k] = true
		if r := a.leases[k]; r != nil && r.worker == workerID {
			recs = append(recs, r)
			held = append(held, l)
		} else {
			lost = append(lost, l)
		}
	}
	a.mu.Unlock()
	if len(recs) == 0 {
		return lost, nil
	}
	vis := min(max(seconds(d), 1), int32(maxVisibility/time.Second))
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
			lost = append(lost, held[i])
		default:
			problems = append(problems, fmt.Errorf("job %s (token %d): %w", held[i].ID, held[i].Token, err))
		}
	}
	if len(problems) > 0 {
		return lost, fmt.Errorf("tasq/sqs: extend leases: %d of %d not renewed: %w", len(problems), len(leases), errors.Join(problems...))
	}
	return lost, nil
}
