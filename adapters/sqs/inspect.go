package sqs

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tasqhq/tasq/queue"
)

// Stats returns SQS's approximate message counts for every TasQ queue under
// the adapter's prefix: visible messages count as available, messages in
// flight as running, delayed messages as scheduled (retries waiting out
// their delay included), and the failed queue's messages as failed. A job
// delayed beyond SQS's 15-minute cap shows as running while it is hidden.
// Completed and cancelled jobs are deleted, so they are not counted.
func (a *Adapter) Stats(ctx context.Context) ([]queue.QueueStat, error) {
	urls, err := a.listQueues(ctx)
	if err != nil {
		return nil, err
	}
	counts := map[string]map[queue.JobState]int64{}
	for _, u := range urls {
		name := u[strings.LastIndexByte(u, '/')+1:]
		rest, ok := strings.CutPrefix(name, a.prefix)
		if !ok {
			continue
		}
		q, failed, ok := decodeName(rest)
		if !ok {
			continue // not one of the adapter's queues
		}
		out, err := a.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(u), AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		}})
		if err != nil {
			if isNoQueue(err) {
				continue // deleted since it was listed
			}
			return nil, fmt.Errorf("tasq/sqs: stats: attributes of SQS queue %q: %w", name, err)
		}
		n := func(attr types.QueueAttributeName) int64 {
			v, _ := strconv.ParseInt(out.Attributes[string(attr)], 10, 64)
			return v
		}
		visible := n(types.QueueAttributeNameApproximateNumberOfMessages)
		inFlight := n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
		delayed := n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed)
		c := counts[q]
		if c == nil {
			c = map[queue.JobState]int64{}
			counts[q] = c
		}
		if failed {
			c[queue.StateFailed] += visible + inFlight + delayed
			continue
		}
		c[queue.StateAvailable] += visible
		c[queue.StateRunning] += inFlight
		c[queue.StateScheduled] += delayed
	}
	var stats []queue.QueueStat
	for q, c := range counts {
		for _, st := range queue.States {
			if c[st] > 0 {
				stats = append(stats, queue.QueueStat{Queue: q, State: st, Count: c[st]})
			}
		}
	}
	sort.SliceStable(stats, func(i, j int) bool { return stats[i].Queue < stats[j].Queue })
	return stats, nil
}

// listQueues returns the URLs of the SQS queues under the adapter's prefix.
func (a *Adapter) listQueues(ctx context.Context) ([]string, error) {
	var urls []string
	in := &awssqs.ListQueuesInput{QueueNamePrefix: aws.String(a.prefix), MaxResults: aws.Int32(1000)}
	for {
		out, err := a.client.ListQueues(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("tasq/sqs: list SQS queues with prefix %q on %s: %w", a.prefix, a.endpoint, err)
		}
		urls = append(urls, out.QueueUrls...)
		if out.NextToken == nil || *out.NextToken == "" {
			return urls, nil
		}
		in.NextToken = out.NextToken
	}
}

// RedriveFailed moves up to limit failed jobs of TasQ queue q from its
// failed queue back to the queue, each with a fresh retry budget (attempt
// back to 0), its error history and its claim token kept (the next claim's
// token is larger than any the job had), and returns how many it moved.
// Records that are not TasQ jobs (unreadable messages) stay where they are.
// It is the SQS counterpart of `tasq jobs retry` for a whole queue. A job
// whose copy was sent but whose record could not be deleted runs once more
// than asked.
func (a *Adapter) RedriveFailed(ctx context.Context, q string, limit int) (int, error) {
	if err := a.checkQueueName(q); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	u, err := a.queueURL(ctx, q, true)
	if err != nil {
		return 0, err
	}
	moved := 0
	for moved < limit {
		out, err := a.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(u), MaxNumberOfMessages: int32(min(limit-moved, chunkLimit)), VisibilityTimeout: int32(fenceTimeout.Seconds()),
		})
		if err != nil {
			return moved, fmt.Errorf("tasq/sqs: redrive: receive from SQS queue %q: %w", a.sqsName(q, true), err)
		}
		if len(out.Messages) == 0 {
			return moved, nil
		}
		var msgs []outMsg
		var handles []string
		for _, m := range out.Messages {
			e, err := decodeEnvelope(aws.ToString(m.Body))
			if err != nil {
				continue // unreadable: stays in the failed queue
			}
			e.Queue, e.Attempts, e.State, e.FinishedAt, e.NotBefore = q, 0, "", nil, nil
			body, err := e.encode(a.maxSize)
			if err != nil {
				continue
			}
			msgs = append(msgs, outMsg{body: body})
			handles = append(handles, aws.ToString(m.ReceiptHandle))
		}
		if len(msgs) == 0 {
			return moved, nil
		}
		errs, err := a.sendChunk(ctx, q, false, msgs)
		if err != nil {
			return moved, fmt.Errorf("tasq/sqs: redrive: %w", err)
		}
		var del []*leaseRec
		for i, e := range errs {
			if e == nil {
				del = append(del, &leaseRec{url: u, handle: handles[i]})
			}
		}
		for _, e := range a.deleteMessages(ctx, del) {
			if e != nil {
				return moved, fmt.Errorf("tasq/sqs: redrive: a job was sent back but its failed record stays: %w", e)
			}
			moved++
		}
		for _, e := range errs {
			if e != nil {
				return moved, fmt.Errorf("tasq/sqs: redrive: %w", e)
			}
		}
	}
	return moved, nil
}
