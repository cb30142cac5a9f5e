// Package sqs is TasQ's Amazon SQS adapter, on aws-sdk-go-v2.
//
// Each TasQ queue is a standard SQS queue named Options.Prefix plus the TasQ
// queue name ("tasq-default"); a second queue with the suffix "_failed"
// ("tasq-default_failed") keeps the final record of every job that failed
// for good. Queues are created on first use unless Options.RequireQueues is
// set.
//
// How TasQ's job model maps onto SQS:
//
//   - A job is one SQS message whose body is a JSON envelope: the job's
//     fields, the attempts it used and the last claim token it had before
//     this copy was sent, its error history and, for delays beyond SQS's
//     15-minute cap, the time it may run.
//   - The lease is the visibility timeout: Claim receives with
//     VisibilityTimeout = the lease rounded up to whole seconds, ExtendLeases
//     is ChangeMessageVisibility, and a job whose worker died is rescued by
//     SQS itself when the timeout runs out. There is no maintenance to run,
//     so the adapter is no queue.Maintainer.
//   - Job.Attempt is the attempts carried in the envelope plus the message's
//     ApproximateReceiveCount, so an expired lease counts as an attempt.
//   - Job.Token, the claim token, is the token carried in the envelope plus
//     the message's ApproximateReceiveCount. Every copy the adapter sends
//     of a job (a retry, a hand-back, a deferred or put-back message, the
//     final record) carries the token of the claim it follows, so a job's
//     tokens grow with every claim and never start over, although each copy
//     is a new message whose receive count starts at zero.
//   - A retry, a hand-back or a failure writes a new message (the retry copy,
//     or the final record in the failed queue) and then deletes the claimed
//     one: message bodies cannot be changed in place.
//   - Delays longer than SQS allows are honoured: the message is sent with
//     the longest delay SQS takes and the time it may run; a worker that
//     receives it early hides it again (up to 12 hours at a time) and, once
//     less than the cap remains, replaces it with a copy delayed by the rest.
//   - SQS cannot filter messages by kind on the server. A claim restricted
//     to some kinds (queue.ClaimRequest.Kinds) receives a message of another
//     kind and puts it back at once, as a fresh copy (see Claim): it costs a
//     receive, a send and a delete, but neither hides the job nor counts an
//     attempt against it.
//
// The completion guard lives in the process that claimed: the adapter keeps
// each claimed message's receipt handle per (job ID, claim token) and
// worker, and Finish first renews the message's visibility with that
// handle. SQS refuses that for a message that became visible again or was
// received by someone else, so the outcome of a stale execution is not
// applied; once the renewal succeeded, nobody else can receive the message
// while the outcome is written. ExtendLeases renews with the same handles
// and reports the leases SQS refused, or that the adapter does not hold.
//
// What SQS cannot do, and so the adapter does not offer: look jobs up by
// ID, list them, or retry, cancel or delete single jobs (it is no
// queue.JobReader or queue.JobEditor; Adapter.RedriveFailed moves a queue's
// failed jobs back); order by priority; take part in a database transaction
// (it is no queue.TxInserter); insert a batch atomically (see InsertError).
// Stats (queue.StatsReader) reports SQS's approximate counts.
//
// Importing the package registers it as the driver "sqs".
package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/tasqhq/tasq/queue"
)

// DriverName is the name the adapter registers under.
const DriverName = "sqs"

// DefaultPrefix is the queue-name prefix used when Options.Prefix is empty.
const DefaultPrefix = "tasq-"

// FailedSuffix ends the name of the SQS queue that keeps a TasQ queue's
// failed jobs: "tasq-default_failed" for the queue "default".
const FailedSuffix = "_failed"

// MaxSQSDelay is the longest DelaySeconds SQS accepts (15 minutes).
const MaxSQSDelay = 15 * time.Minute

// maxVisibility is the longest visibility timeout SQS accepts (12 hours); a
// minute less is used when hiding a message received too early, because the
// limit counts from the receive.
const (
	maxVisibility = 12 * time.Hour
	maxHide       = maxVisibility - time.Minute
)

// maxQueueNameLength is SQS's limit on queue names.
const maxQueueNameLength = 80

func init() {
	queue.RegisterDriver(DriverName, func(ctx context.Context, url string) (queue.Adapter, error) {
		a, err := New(ctx, url)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return a, nil
	})
}

// Options configures an Adapter. The zero value is the default.
type Options struct {
	// Prefix starts the name of every SQS queue the adapter uses, so that
	// several applications (or tests) can share an account and region.
	// Letters, digits, '-' and '_' only; default DefaultPrefix ("tasq-").
	Prefix string
	// RequireQueues makes the adapter use existing SQS queues only, as
	// created by infrastructure code: an operation on a TasQ queue whose SQS
	// queue is missing fails and says which queue to create. By default the
	// adapter creates missing queues (and their failed-job queues) on first
	// use, with a 14-day message retention.
	RequireQueues bool
	// MaxDelay is the longest delay the adapter hands to SQS in one message;
	// longer delays are carried in the message and honoured by re-hiding it.
	// Default (and maximum) MaxSQSDelay; tests lower it to exercise long
	// delays quickly.
	MaxDelay time.Duration
	// MaxMessageSize caps the encoded size of one job message. Default
	// 262144 (256 KiB), the limit of SQS queues created before August 2025
	// and of many emulators.
	MaxMessageSize int
	// Logger receives the adapter's warnings (unreadable messages moved to
	// the failed queue). Default slog.Default().
	Logger *slog.Logger
}

// Adapter is the SQS adapter. It implements queue.Adapter and is safe for
// concurrent use. The receipt handles of the jobs it claimed live in it, so
// a worker must finish its jobs through the adapter that claimed them.
type Adapter struct {
	client   *awssqs.Client
	prefix   string
	require  bool
	maxDelay time.Duration
	maxSize  int
	log      *slog.Logger
	endpoint string // for messages

	mu     sync.Mutex
	urls   map[string]string      // SQS queue name -> queue URL
	leases map[leaseKey]*leaseRec // claimed messages, the completion guard
	pruned time.Time              // when Claim last forgot abandoned claims
}

// The capabilities the adapter has; it has no others (see the package
// documentation).
var (
	_ queue.Adapter     = (*Adapter)(nil)
	_ queue.StatsReader = (*Adapter)(nil)
)

// New opens an adapter from a URL:
//
//	sqs://REGION                       Amazon SQS in REGION with the default AWS
//	                                   credential chain (sqs:// alone: AWS_REGION)
//	http://127.0.0.1:9324              an SQS-compatible endpoint (emulator,
//	https://sqs.example.internal       LocalStack, VPC endpoint) as BaseEndpoint
//
// Query parameters: region (default AWS_REGION, else us-east-1 for
// endpoints), prefix (see Options.Prefix) and require_queues=true (see
// Options.RequireQueues), e.g. http://127.0.0.1:9324?prefix=app-&region=eu-west-1.
// User info in the URL (sqs://AKID:SECRET@eu-west-1) gives static
// credentials, an access key ID and its secret, in place of the default
// credential chain; errors and logs never show the secret. A plain http://
// endpoint is taken to be an emulator: without user info, and when
// AWS_ACCESS_KEY_ID is not set, it signs with static dummy credentials,
// which emulators accept. New checks that the endpoint answers.
func New(ctx context.Context, rawURL string) (*Adapter, error) {
	if rawURL == "" {
		return nil, errors.New("tasq/sqs: empty URL; give sqs://REGION for Amazon SQS or http://127.0.0.1:PORT for an emulator (the tests read TASQ_SQS_ENDPOINT)")
	}
	shown := redactURL(rawURL) // the only form of the URL any message shows
	u, err := url.Parse(rawURL)
	if err != nil {
		// A *url.Error repeats the whole URL, secrets included: keep its
		// reason only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("tasq/sqs: cannot parse URL %q: %w; use sqs://REGION or http://HOST:PORT", shown, err)
	}
	q := u.Query()
	opts := Options{Prefix: q.Get("prefix")}
	if v := q.Get("require_queues"); v != "" {
		if opts.RequireQueues, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("tasq/sqs: URL %q: parameter require_queues=%q is not a boolean", shown, v)
		}
	}
	region := q.Get("region")
	var loadOpts []func(*config.LoadOptions) error
	if u.User != nil {
		key := u.User.Username()
		secret, ok := u.User.Password()
		if key == "" || !ok || secret == "" {
			return nil, fmt.Errorf("tasq/sqs: URL %q: user info must be ACCESS_KEY_ID:SECRET_ACCESS_KEY (both); leave it out to use the AWS credential chain", shown)
		}
		loadOpts = append(loadOpts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")))
	}
	var endpoint string
	switch u.Scheme {
	case "sqs":
		if u.Host != "" {
			if region != "" && region != u.Host {
				return nil, fmt.Errorf("tasq/sqs: URL %q names two regions (%s and %s)", shown, u.Host, region)
			}
			region = u.Host
		}
		if region == "" && os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
			return nil, fmt.Errorf("tasq/sqs: URL %q names no region; use sqs://REGION (e.g. sqs://us-east-1) or set AWS_REGION", shown)
		}
		endpoint = "Amazon SQS"
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("tasq/sqs: URL %q has no host; use e.g. http://127.0.0.1:9324", shown)
		}
		if region == "" && os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
			region = "us-east-1"
		}
		// The endpoint without user info or query: it is what the SDK
		// sends to and shows in its errors.
		base := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
		endpoint = base.String()
		if u.Scheme == "http" && u.User == nil && os.Getenv("AWS_ACCESS_KEY_ID") == "" {
			loadOpts = append(loadOpts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("tasq", "tasq", "")))
		}
	default:
		return nil, fmt.Errorf("tasq/sqs: URL %q: unknown scheme %q; use sqs://REGION for Amazon SQS or http://HOST:PORT for an emulator", shown, u.Scheme)
	}
	if region != "" {
		loadOpts = append(loadOpts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("tasq/sqs: load AWS configuration: %w", err)
	}
	client := awssqs.NewFromConfig(cfg, func(o *awssqs.Options) {
		if u.Scheme != "sqs" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return newAdapter(ctx, client, opts, endpoint+" (region "+cfg.Region+")")
}

// NewFromClient returns an adapter on an existing SQS client, after checking
// that the endpoint answers.
func NewFromClient(ctx context.Context, client *awssqs.Client, opts Options) (*Adapter, error) {
	if client == nil {
		return nil, errors.New("tasq/sqs: NewFromClient got a nil client")
	}
	where := "Amazon SQS"
	if o := client.Options(); o.BaseEndpoint != nil {
		where = redactURL(*o.BaseEndpoint)
	}
	return newAdapter(ctx, client, opts, where+" (region "+client.Options().Region+")")
}

func newAdapter(ctx context.Context, client *awssqs.Client, opts Options, endpoint string) (*Adapter, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if len(opts.Prefix) > 40 || strings.IndexFunc(opts.Prefix, func(r rune) bool { return !nameChar(r) && r != '_' }) >= 0 {
		return nil, fmt.Errorf("%w: SQS queue-name prefix %q: use at most 40 letters, digits, '-' or '_'", queue.ErrInvalidConfig, opts.Prefix)
	}
	if opts.MaxDelay <= 0 || opts.MaxDelay > MaxSQSDelay {
		opts.MaxDelay = MaxSQSDelay
	}
	opts.MaxDelay = opts.MaxDelay.Truncate(time.Second)
	if opts.MaxDelay < time.Second {
		opts.MaxDelay = time.Second
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 256 * 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Adapter{
		client: client, prefix: opts.Prefix, require: opts.RequireQueues,
		maxDelay: opts.MaxDelay, maxSize: opts.MaxMessageSize,
		log: opts.Logger.With("adapter", DriverName), endpoint: endpoint,
		urls: map[string]string{}, leases: map[leaseKey]*leaseRec{},
	}
	if err := a.ping(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// ping checks that the endpoint answers. An error response from SQS (even
// access denied for ListQueues) proves it does.
func (a *Adapter) ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err := a.client.ListQueues(pctx, &awssqs.ListQueuesInput{QueueNamePrefix: aws.String(a.prefix), MaxResults: aws.Int32(1)})
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "ExpiredToken",
			"IncompleteSignature", "MissingAuthenticationToken", "InvalidSecurity", "AWS.SimpleQueueService.InvalidSecurity":
			return fmt.Errorf("tasq/sqs: SQS at %s refused the AWS credentials: %w; check AWS_ACCESS_KEY_ID / AWS_PROFILE and the region", a.endpoint, err)
		}
		return nil // it answered (access denied to ListQueues alone is fine)
	}
	return fmt.Errorf("tasq/sqs: cannot reach SQS at %s: %w; check the adapter URL (the tests read TASQ_SQS_ENDPOINT), the AWS credentials, and that the server is running", a.endpoint, err)
}

// Name returns "sqs".
func (a *Adapter) Name() string { return DriverName }

// Client returns the adapter's SQS client.
func (a *Adapter) Client() *awssqs.Client { return a.client }

// Prefix returns the prefix of the adapter's SQS queue names.
func (a *Adapter) Prefix() string { return a.prefix }

// Close forgets the adapter's claimed jobs; their messages become visible
// again when their visibility timeouts run out. The SQS client holds no
// connections that need closing.
func (a *Adapter) Close() {
	a.mu.Lock()
	clear(a.leases)
	a.mu.Unlock()
}

// nameChar reports whether r may stand for itself in an SQS queue name made
// from a TasQ queue name.
func nameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-'
}

// encodeName maps a TasQ queue name to the characters SQS allows: letters,
// digits and '-' stand for themselves, '_' becomes "__" and every other byte
// "_XX" (upper-case hex). The mapping is reversible, and a '_' followed by a
// lower-case letter (as in FailedSuffix) never occurs in it.
func encodeName(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c < 0x80 && nameChar(rune(c)):
			b.WriteByte(c)
		case c == '_':
			b.WriteString("__")
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	return b.String()
}

// decodeName reverses encodeName on an SQS queue name without its prefix,
// telling whether it is a failed-job queue. ok is false for names the
// adapter did not make.
func decodeName(s string) (name string, failed, ok bool) {
	if rest, found := strings.CutSuffix(s, FailedSuffix); found {
		// "x__failed" is the queue "x_failed", not the failed queue of "x_".
		if n, failed, ok := decodeName(rest); ok && !failed && encodeName(n)+FailedSuffix == s {
			return n, true, true
		}
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x80 && nameChar(rune(c)):
			b.WriteByte(c)
		case c == '_' && i+1 < len(s) && s[i+1] == '_':
			b.WriteByte('_')
			i++
		case c == '_' && i+2 < len(s):
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || strings.ToUpper(s[i+1:i+3]) != s[i+1:i+3] {
				return "", false, false
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", false, false
		}
	}
	if b.Len() == 0 || encodeName(b.String()) != s {
		return "", false, false // empty, or not the adapter's spelling
	}
	return b.String(), false, true
}

// sqsName returns the SQS queue name of TasQ queue q, or of its failed-job
// queue.
func (a *Adapter) sqsName(q string, failed bool) string {
	n := a.prefix + encodeName(q)
	if failed {
		n += FailedSuffix
	}
	return n
}

// checkQueueName checks that q is a valid TasQ queue name whose SQS queues
// fit SQS's name limit.
func (a *Adapter) checkQueueName(q string) error {
	if err := queue.ValidateQueueName(q); err != nil {
		return err
	}
	if n := a.sqsName(q, true); len(n) > maxQueueNameLength {
		return fmt.Errorf("%w: queue %q needs the SQS queue %q, longer than SQS's %d characters; use a shorter queue name or prefix (letters, digits and '-' take one character, others up to three)",
			queue.ErrInvalidConfig, q, n, maxQueueNameLength)
	}
	return nil
}

// queueURL returns the URL of TasQ queue q's SQS queue (or its failed-job
// queue), creating the queue unless the adapter requires existing queues.
func (a *Adapter) queueURL(ctx context.Context, q string, failed bool) (string, error) {
	name := a.sqsName(q, failed)
	a.mu.Lock()
	u, ok := a.urls[name]
	a.mu.Unlock()
	if ok {
		return u, nil
	}
	if a.require {
		out, err := a.client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			if isNoQueue(err) {
				what := "queue"
				if failed {
					what = "failed-job queue"
				}
				return "", fmt.Errorf("tasq/sqs: the SQS queue %q (the %s of TasQ queue %q) does not exist on %s; create it, or let the adapter create queues (drop require_queues / Options.RequireQueues)",
					name, what, q, a.endpoint)
			}
			return "", fmt.Errorf("tasq/sqs: look up SQS queue %q: %w", name, err)
		}
		u = aws.ToString(out.QueueUrl)
	} else {
		attrs := map[string]string{
			// The longest retention SQS allows: scheduled jobs and failed
			// records must outlive the 4-day default.
			string(types.QueueAttributeNameMessageRetentionPeriod): "1209600",
		}
		out, err := a.client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
		if err != nil {
			return "", fmt.Errorf("tasq/sqs: create SQS queue %q on %s: %w; if the queue exists with other attributes, delete it or use Options.RequireQueues", name, a.endpoint, err)
		}
		u = aws.ToString(out.QueueUrl)
	}
	a.mu.Lock()
	a.urls[name] = u
	a.mu.Unlock()
	return u, nil
}

// forgetURL drops a cached queue URL after SQS said the queue is gone.
func (a *Adapter) forgetURL(u string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.urls {
		if v == u {
			delete(a.urls, k)
		}
	}
}

// isNoQueue reports whether err says the queue does not exist.
func isNoQueue(err error) bool {
	var nq *types.QueueDoesNotExist
	if errors.As(err, &nq) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		c := apiErr.ErrorCode()
		return strings.Contains(c, "NonExistentQueue") || strings.Contains(c, "QueueDoesNotExist")
	}
	return false
}

// seconds rounds d up to whole seconds, for SQS's second-granular delays
// and visibility timeouts, so that nothing happens earlier than asked.
func seconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	return int32((d + time.Second - 1) / time.Second)
}
