// Package redis is TasQ's Redis adapter, on github.com/redis/go-redis/v9.
//
// Every job is a hash; sorted sets index it by queue, state and time; and every
// change of state is one Lua script, so it is atomic on the server: a batch
// insert, a claim (take up to N jobs of the kinds asked for, mark them
// running, set the lease, give each a new claim token), a batch of outcomes
// (each behind the completion guard), a lease renewal, and maintenance
// (promote due jobs, rescue expired leases). A worker that dies keeps
// nothing: its jobs' leases run out and Maintain hands them back.
//
// # Claim tokens
//
// Every claim of a job increments its token field (HINCRBY), and nothing
// else writes it: not a hand-back, not a rescue, not RetryJob. An outcome
// (Finish) and a lease renewal (ExtendLeases) apply only while the job is
// running under the same token for the same worker, so an execution that
// lost its claim (rescued, cancelled, retried by an operator, or claimed
// again by the same worker) can never write again.
//
// All times (dispatch, run_at, leases, finish, error entries) come from the
// Redis server's clock (TIME inside the scripts), never a client's, so workers
// and dispatchers with skewed clocks agree. They are stored in microseconds
// since the Unix epoch.
//
// # Keys
//
// Every key starts with the prefix (Options.Prefix, default "tasq:"):
//
//	<prefix>job:<id>             hash: id kind queue state priority payload result attempt token
//	                             max_retries retry_delay_ms timeout_ms run_at_us dispatched_at_us
//	                             attempted_at_us attempted_by lease_expires_at_us finished_at_us
//	                             errors (JSON: [{"attempt":1,"at_us":...,"error":"..."}], at most
//	                             queue.MaxErrorHistory entries: the first and the newest)
//	                             errors_omitted (entries dropped from errors; absent: 0)
//	<prefix>avail:<queue>        zset of available jobs: score -priority, member
//	                             "<run_at_us, 16 digits>:<id>", so ZRANGE gives highest
//	                             priority first, then oldest
//	<prefix>delayed              zset of scheduled and retryable job IDs by run_at_us
//	<prefix>running              zset of running job IDs by lease_expires_at_us
//	<prefix>jobs                 zset of all job IDs by dispatched_at_us
//	<prefix>idx:<state>:<queue>  zset of job IDs in that state and queue by dispatched_at_us
//	<prefix>queues               set of queue names that have jobs
//	<prefix>wake                 pub/sub channel: the name of a queue that gained available jobs
//	<prefix>ctrl                 pub/sub channel: "cancel <id> <token>" when an operator cancels a running job
//
// Finished jobs (completed, failed, cancelled) are kept, as in PostgreSQL,
// until deleted (DeleteJob, `tasq jobs delete`): each costs its hash
// (payload, result and errors included) and two sorted-set entries, about
// 0.8 KB for a job with a tiny payload and result on Redis 7.0, more for
// bigger ones. Size Redis's memory for that, or delete old jobs yourself;
// there is no automatic expiry.
//
// The adapter needs one Redis server (or a primary with replicas, e.g. behind
// Sentinel), version 5 or newer; it is tested with 7.0. Redis Cluster is not
// supported: the scripts touch keys they compute. Redis cannot join a SQL
// transaction, so the adapter is no queue.TxInserter (the client's
// DispatchTx fails with queue.ErrTxUnsupported): dispatch after your
// transaction commits, or use the postgres driver.
//
// Importing the package registers it as the driver "redis". Its URL is a
// go-redis URL (redis://[user:password@]host:port/db, or rediss:// for TLS)
// with an optional key_prefix query parameter, e.g.
// redis://127.0.0.1:6379/0?key_prefix=myapp:tasq:.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/queue"
)

// DriverName is the name the adapter registers under.
const DriverName = "redis"

// DefaultPrefix starts every key the adapter uses unless Options.Prefix says otherwise.
const DefaultPrefix = "tasq:"

// PrefixParam is the URL query parameter New reads the key prefix from.
const PrefixParam = "key_prefix"

// EnvRedisURL is the environment variable error messages point to; the
// tests (internal/testredis) read it too.
const EnvRedisURL = "TASQ_REDIS_URL"

// minMajorVersion is the oldest Redis whose scripts may call TIME before
// writing (script effects replication is the default since 5.0).
const minMajorVersion = 5

func init() {
	queue.RegisterDriver(DriverName, func(ctx context.Context, url string) (queue.Adapter, error) {
		a, err := New(ctx, url)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return a, nil
	})
}

// Options configures an adapter made by NewFromClient.
type Options struct {
	// Prefix starts every key and the notification channel; "" means
	// DefaultPrefix. Adapters with different prefixes on one server do not
	// see each other's jobs.
	Prefix string
}

// Adapter is the Redis adapter. It implements queue.Adapter,
// queue.Maintainer, queue.Notifier, queue.CancelListener, queue.JobReader,
// queue.JobEditor and queue.StatsReader, and is safe for concurrent use.
type Adapter struct {
	client    goredis.UniversalClient
	ownClient bool
	addr      string // for messages
	keys      keys
}

var (
	_ queue.Adapter     = (*Adapter)(nil)
	_ queue.Maintainer  = (*Adapter)(nil)
	_ queue.Notifier    = (*Adapter)(nil)
	_ queue.JobReader   = (*Adapter)(nil)
	_ queue.JobEditor   = (*Adapter)(nil)
	_ queue.StatsReader = (*Adapter)(nil)
)

// New connects to the Redis server at url, checks that it answers and is
// recent enough, and returns an adapter that owns its client. The URL may
// carry the key prefix as ?key_prefix=...; the rest is parsed by
// go-redis's ParseURL.
func New(ctx context.Context, rawURL string) (*Adapter, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("tasq/redis: empty Redis URL; set %s (or pass one), e.g. redis://127.0.0.1:6379/0", EnvRedisURL)
	}
	rest, prefix, err := splitPrefix(rawURL)
	if err != nil {
		return nil, err
	}
	opt, err := goredis.ParseURL(rest)
	if err != nil {
		return nil, fmt.Errorf("tasq/redis: cannot parse Redis URL %s: %w; use redis://[user:password@]host:port/db[?key_prefix=...]", redact(rawURL), urlErr(err))
	}
	client := goredis.NewClient(opt)
	a, err := NewFromClient(ctx, client, Options{Prefix: prefix})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	a.ownClient = true
	return a, nil
}

// NewFromClient returns an adapter on an existing client (a *redis.Client,
// or a failover client from redis.NewFailoverClient; cluster and ring
// clients are refused), after checking that the server answers and is
// recent enough. Close does not close a client given here.
func NewFromClient(ctx context.Context, client goredis.UniversalClient, opts Options) (*Adapter, error) {
	if client == nil {
		return nil, errors.New("tasq/redis: NewFromClient got a nil client")
	}
	switch c := client.(type) {
	case *goredis.ClusterClient, *goredis.Ring:
		return nil, fmt.Errorf("tasq/redis: %T is not supported: the adapter's scripts touch keys they compute, so all keys must live on one server; use a *redis.Client on a single server, or a failover client (Sentinel)", c)
	case *goredis.Client:
		if c == nil {
			return nil, errors.New("tasq/redis: NewFromClient got a nil *redis.Client")
		}
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	a := &Adapter{client: client, addr: addrOf(client), keys: keys{prefix: prefix}}
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("tasq/redis: cannot reach Redis at %s: %w; check the URL (%s) and that redis-server is running there",
			a.addr, err, EnvRedisURL)
	}
	info, err := client.Info(ctx, "server").Result()
	if err != nil {
		return nil, a.wrap("read server version", err)
	}
	if v, ok := serverVersion(info); ok {
		if major, _, _ := strings.Cut(v, "."); atoiOr(major, minMajorVersion) < minMajorVersion {
			return nil, fmt.Errorf("tasq/redis: Redis at %s is version %s; TasQ needs %d.0 or newer", a.addr, v, minMajorVersion)
		}
	}
	return a, nil
}

// Name returns "redis".
func (a *Adapter) Name() string { return DriverName }

// Client returns the adapter's Redis client.
func (a *Adapter) Client() goredis.UniversalClient { return a.client }

// Prefix returns the prefix of every key the adapter uses.
func (a *Adapter) Prefix() string { return a.keys.prefix }

// Close closes the client if the adapter opened it.
func (a *Adapter) Close() {
	if a.ownClient {
		_ = a.client.Close()
	}
}

// wrap names the failed operation and the server.
func (a *Adapter) wrap(op string, err error) error {
	return fmt.Errorf("tasq/redis: %s on %s: %w", op, a.addr, err)
}

// keys builds the adapter's key names; see the package documentation.
type keys struct{ prefix string }

func (k keys) job(id string) string { return k.prefix + "job:" + id }
func (k keys) idx(st queue.JobState, q string) string {
	return k.prefix + "idx:" + string(st) + ":" + q
}
func (k keys) all() string     { return k.prefix + "jobs" }
func (k keys) queues() string  { return k.prefix + "queues" }
func (k keys) channel() string { return k.prefix + "wake" }
func (k keys) ctrl() string    { return k.prefix + "ctrl" }

// splitPrefix removes the key_prefix parameter from a Redis URL, since
// go-redis rejects parameters it does not know.
func splitPrefix(raw string) (rest, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("tasq/redis: cannot parse Redis URL %s: %w; use redis://[user:password@]host:port/db[?key_prefix=...]", redact(raw), urlErr(err))
	}
	q := u.Query()
	if !q.Has(PrefixParam) {
		return raw, "", nil
	}
	prefix = q.Get(PrefixParam)
	if prefix == "" {
		return "", "", fmt.Errorf("tasq/redis: %s is empty in Redis URL %s; leave it out for the default %q", PrefixParam, redact(raw), DefaultPrefix)
	}
	q.Del(PrefixParam)
	u.RawQuery = q.Encode()
	return u.String(), prefix, nil
}

// addrOf names the server a client talks to, for messages.
func addrOf(c goredis.UniversalClient) string {
	switch c := c.(type) {
	case *goredis.Client:
		return c.Options().Addr
	case interface{ String() string }:
		return c.String()
	}
	return fmt.Sprintf("(%T)", c)
}

// serverVersion finds redis_version in INFO output.
func serverVersion(info string) (string, bool) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, true
		}
	}
	return "", false
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

// urlErr drops the URL (and any password in it) from a *url.Error.
func urlErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact hides the password of a URL for messages.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
