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
	"github.com/aws/smithy-go"
	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// InsertError reports a batch that SQS did not store whole. SQS takes at
// most ten messages per call, so a larger batch (or one spanning queues) is
// several calls, and one can fail after others succeeded. Insert validates
// and encodes the whole batch before it sends anything, so this happens only
// when SQS itself fails mid-way. errors.As gets it from Insert's error.
type InsertError struct {
	// Sent are the jobs SQS stored: they exist and will run. Do not insert
	// them again, or they run twice.
	Sent []uuid.UUID
	// Unsent are the jobs that were not stored.
	Unsent []uuid.UUID
	// Unknown are the jobs of a call whose answer was lost (a network
	// error or timeout): SQS may or may not have stored them.
	Unknown []uuid.UUID
	// Err is why the rest was not sent.
	Err error
}

// Error implements error.
func (e *InsertError) Error() string {
	return fmt.Sprintf("tasq/sqs: batch of %d jobs not stored whole: %d sent, %d not sent, %d unknown (InsertError.Sent, .Unsent and .Unknown list them; SQS cannot insert a batch atomically): %v",
		len(e.Sent)+len(e.Unsent)+len(e.Unknown), len(e.Sent), len(e.Unsent), len(e.Unknown), e.Err)
}

// Unwrap returns the underlying error.
func (e *InsertError) Unwrap() error { return e.Err }

// outMsg is one message to send.
type outMsg struct {
	body  string
	delay int32 // DelaySeconds
}

// schedule prepares e to run after delay: it returns the DelaySeconds to
// send with, and sets e.NotBefore when the delay is longer than SQS allows.
// Delays are rounded up to whole seconds, so a job never runs early.
func (a *Adapter) schedule(e *envelope, delay time.Duration, now time.Time) int32 {
	e.NotBefore = nil
	if delay <= 0 {
		return 0
	}
	if delay <= a.maxDelay {
		return seconds(delay)
	}
	t := now.Add(delay).UTC()
	e.NotBefore = &t
	return seconds(a.maxDelay)
}

// checkJobs adds SQS's queue-name rules to queue.CheckNewJobs; it runs
// before anything is sent.
func (a *Adapter) checkJobs(jobs []queue.NewJob) error {
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	if err := queue.CheckPlainJobs("sqs", jobs); err != nil {
		return err
	}
	for i := range jobs {
		if err := a.checkQueueName(jobs[i].Queue); err != nil {
			return err
		}
	}
	return nil
}

// Insert sends jobs as SQS messages, in calls of up to ten per queue. It
// validates and encodes every job, and finds (or creates) every queue,
// before sending any; if SQS fails after that, the error is an *InsertError
// that lists the jobs sent and not sent. SQS has no transaction that could
// make a batch all-or-nothing.
func (a *Adapter) Insert(ctx context.Context, jobs []queue.NewJob) error {
	if err := a.checkJobs(jobs); err != nil {
		return err
	}
	now := time.Now()
	type group struct {
		queue string
		url   string
		ids   []uuid.UUID
		msgs  []outMsg
	}
	var groups []*group
	byQueue := map[string]*group{}
	for i := range jobs {
		j := &jobs[i]
		e := newEnvelope(j, now)
		delay := a.schedule(e, j.Delay, now)
		body, err := e.encode(a.maxSize)
		if err != nil {
			return err
		}
		g := byQueue[j.Queue]
		if g == nil {
			g = &group{queue: j.Queue}
			byQueue[j.Queue] = g
			groups = append(groups, g)
		}
		g.ids = append(g.ids, j.ID)
		g.msgs = append(g.msgs, outMsg{body: body, delay: delay})
	}
	for _, g := range groups {
		u, err := a.queueURL(ctx, g.queue, false)
		if err != nil {
			return err // nothing sent yet
		}
		g.url = u
	}

	var sent []uuid.UUID
	// partial reports a failure in chunk [from, to) of group gi: the chunk's
	// failed entries (all of them when failed is nil) and everything after
	// it were not sent, except that a call whose answer was lost may have
	// stored its chunk.
	partial := func(gi, from, to int, failed map[int]bool, err error) error {
		var apiErr smithy.APIError
		lost := failed == nil && !errors.As(err, &apiErr)
		ie := &InsertError{Sent: sent, Err: err}
		ids := groups[gi].ids
		for k := from; k < len(ids); k++ {
			switch {
			case k < to && lost:
				ie.Unknown = append(ie.Unknown, ids[k])
			case failed == nil || k >= to || failed[k]:
				ie.Unsent = append(ie.Unsent, ids[k])
			}
		}
		for _, g := range groups[gi+1:] {
			ie.Unsent = append(ie.Unsent, g.ids...)
		}
		return ie
	}
	for gi, g := range groups {
		for _, c := range a.chunks(g.msgs) {
			errs, err := a.sendChunk(ctx, g.queue, false, g.msgs[c[0]:c[1]])
			if err != nil {
				return partial(gi, c[0], c[1], nil, err)
			}
			var failed map[int]bool
			var first error
			for k, e := range errs {
				if e == nil {
					sent = append(sent, g.ids[c[0]+k])
					continue
				}
				if failed == nil {
					failed, first = map[int]bool{}, e
				}
				failed[c[0]+k] = true
			}
			if failed != nil {
				return partial(gi, c[0], c[1], failed, first)
			}
		}
	}
	return nil
}

// chunkLimit is the most entries one SQS batch call takes.
const chunkLimit = 10

// chunks splits msgs into [from, to) runs that one SendMessageBatch takes:
// at most ten messages and at most maxSize bytes in all.
func (a *Adapter) chunks(msgs []outMsg) [][2]int {
	var out [][2]int
	from, size := 0, 0
	for i, m := range msgs {
		if i > from && (i-from == chunkLimit || size+len(m.body) > a.maxSize) {
			out = append(out, [2]int{from, i})
			from, size = i, 0
		}
		size += len(m.body)
	}
	if from < len(msgs) {
		out = append(out, [2]int{from, len(msgs)})
	}
	return out
}

// sendChunk sends up to ten messages to TasQ queue q (or its failed-job
// queue) in one call. It returns an error per message (nil: sent), or err
// when the call as a whole failed and nothing was sent. A queue deleted
// behind the adapter's back is looked up (or created) again once.
func (a *Adapter) sendChunk(ctx context.Context, q string, failed bool, msgs []outMsg) (errs []error, err error) {
	entries := make([]types.SendMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.body), DelaySeconds: m.delay}
	}
	var out *awssqs.SendMessageBatchOutput
	for try := 0; ; try++ {
		u, err := a.queueURL(ctx, q, failed)
		if err != nil {
			return nil, err
		}
		out, err = a.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(u), Entries: entries})
		if err == nil {
			break
		}
		if isNoQueue(err) && try == 0 {
			a.forgetURL(u)
			continue
		}
		return nil, fmt.Errorf("tasq/sqs: send messages to SQS queue %q: %w", a.sqsName(q, failed), err)
	}
	errs = make([]error, len(msgs))
	answered := make([]bool, len(msgs))
	for _, s := range out.Successful {
		if i, err := strconv.Atoi(aws.ToString(s.Id)); err == nil && i >= 0 && i < len(msgs) {
			answered[i] = true
		}
	}
	for _, f := range out.Failed {
		if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i >= 0 && i < len(msgs) {
			answered[i] = true
			errs[i] = batchEntryError("send message", f)
		}
	}
	for i, ok := range answered {
		if !ok {
			errs[i] = errors.New("tasq/sqs: send message: SQS did not report this entry as sent or failed")
		}
	}
	return errs, nil
}

// entryError is SQS's refusal of one entry of a batch call.
type entryError struct {
	op, code, msg string
	sender        bool // SQS blames the request (the entry), not itself
}

// Error implements error.
func (e *entryError) Error() string {
	who := "SQS"
	if e.sender {
		who = "the request"
	}
	return fmt.Sprintf("tasq/sqs: %s: %s (%s's fault): %s", e.op, e.code, who, e.msg)
}

// batchEntryError turns a failed batch entry into an error.
func batchEntryError(op string, f types.BatchResultErrorEntry) error {
	return &entryError{op: op, code: aws.ToString(f.Code), msg: aws.ToString(f.Message), sender: f.SenderFault}
}
