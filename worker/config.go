package worker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// Config configures a Worker. Zero fields take the defaults shown.
type Config struct {
	// Queues are served in priority order: free slots go to the first queue's
	// jobs, then the second's, and so on. Default ["default"].
	Queues []string
	// Concurrency is how many jobs run at once. Default 20.
	Concurrency int
	// BlockingConcurrency is how many Blocking (SyncTask-style) jobs run at
	// once, within Concurrency. Default GOMAXPROCS.
	BlockingConcurrency int
	// PollInterval is how often the worker looks for jobs without being woken
	// by a notification: the safety net under LISTEN/NOTIFY. Default 1s.
	PollInterval time.Duration
	// FetchCooldown is the shortest pause between two claims, so that a busy
	// worker claims in batches rather than one job at a time. Default 1ms.
	FetchCooldown time.Duration
	// LeaseDuration is how long a claimed job stays leased without a
	// heartbeat; the heartbeat renews it every third of that. A job whose
	// worker dies runs again after at most this long. Default 30s.
	LeaseDuration time.Duration
	// MaintenanceInterval is how often due scheduled/retryable jobs are made
	// available and expired leases rescued. Default 1s.
	MaintenanceInterval time.Duration
	// ShutdownGrace is how long a stopping worker lets running jobs finish
	// before cancelling their contexts and handing them back. Default 10s.
	ShutdownGrace time.Duration
	// FailedHookTimeout bounds a task's Failed hook. Default 30s.
	FailedHookTimeout time.Duration
	// LeaderTTL is the length of a maintenance leader's term, on backends
	// that elect one (queue.LeaderElector): only the leader promotes, rescues
	// and applies retention, and it renews its term every third of TTL. When
	// it dies another worker takes over within about 1⅓ TTL, so a killed
	// leader's own jobs wait at most their lease plus that. Default 10s.
	LeaderTTL time.Duration
	// Retention says how long finished jobs are kept before the leader
	// deletes them (on backends that can: queue.Purger). Give every worker
	// the same Retention: whichever leads applies its own.
	Retention Retention
	// Cron says how the worker fires periodic jobs (see CronConfig).
	Cron CronConfig
	// MaxTasks, when positive, makes Run return after that many jobs have been
	// claimed and finished: a batch run.
	MaxTasks int
	// CompletionBatchSize caps the outcomes written in one statement. Default 1000.
	CompletionBatchSize int
	// Resolver, when set, runs before every attempt's Handle to load what the
	// payload only refers to, such as ORM models (see package ormref): the
	// guide's session for re-fetching models.
	Resolver queue.Resolver
	// Middleware wraps every attempt, the first outermost (see
	// queue.AttemptMiddleware): tracing, metrics, logging context. Handle
	// runs with the context the innermost middleware passes on.
	Middleware []queue.AttemptMiddleware
	// Observer, when set, is told how long each claim and each batch of
	// outcomes written takes (see Observer): claim and completion latency
	// for metrics. Nil costs nothing.
	Observer Observer
	// ID names the worker in attempted_by and in logs. Default host-pid-random.
	ID string
	// Logger receives the worker's logs. Default slog.Default().
	Logger *slog.Logger
}

// Retention says how long finished jobs are kept. A zero age takes the
// default (completed 24 h, cancelled 7 days, failed 30 days — failed jobs are
// the dead letters an operator looks at); queue.KeepForever keeps them.
type Retention struct {
	Completed, Cancelled, Failed time.Duration
	// Queues sets ages per queue; a zero age there takes the age above.
	Queues map[string]RetentionAges
	// Archive moves expired jobs to tasq_jobs_archive instead of deleting
	// them, keeping history out of the hot table.
	Archive bool
	// Interval is how often the leader looks for expired jobs. Default 1m.
	Interval time.Duration
}

// RetentionAges are one queue's retention ages.
type RetentionAges struct {
	Completed, Cancelled, Failed time.Duration
}

// Default retention ages.
const (
	DefaultKeepCompleted = 24 * time.Hour
	DefaultKeepCancelled = 7 * 24 * time.Hour
	DefaultKeepFailed    = 30 * 24 * time.Hour
)

func (r Retention) withDefaults() (Retention, error) {
	pick := func(v, def time.Duration) time.Duration {
		if v == 0 {
			return def
		}
		return v
	}
	check := func(where string, a RetentionAges) error {
		for name, v := range map[string]time.Duration{"Completed": a.Completed, "Cancelled": a.Cancelled, "Failed": a.Failed} {
			if v < 0 && v != queue.KeepForever {
				return fmt.Errorf("worker: Retention%s.%s is %v; use a positive age, 0 for the default or queue.KeepForever", where, name, v)
			}
		}
		return nil
	}
	if err := check("", RetentionAges{r.Completed, r.Cancelled, r.Failed}); err != nil {
		return r, err
	}
	r.Completed, r.Cancelled, r.Failed = pick(r.Completed, DefaultKeepCompleted), pick(r.Cancelled, DefaultKeepCancelled), pick(r.Failed, DefaultKeepFailed)
	qs := make(map[string]RetentionAges, len(r.Queues))
	for q, a := range r.Queues {
		if err := queue.ValidateQueueName(q); err != nil {
			return r, fmt.Errorf("worker: Retention.Queues: %w", err)
		}
		if err := check(fmt.Sprintf(".Queues[%q]", q), a); err != nil {
			return r, err
		}
		qs[q] = RetentionAges{pick(a.Completed, r.Completed), pick(a.Cancelled, r.Cancelled), pick(a.Failed, r.Failed)}
	}
	r.Queues = qs
	if r.Interval < 0 {
		return r, fmt.Errorf("worker: Retention.Interval is %v; it must not be negative", r.Interval)
	}
	if r.Interval == 0 {
		r.Interval = time.Minute
	}
	return r, nil
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Queues) == 0 {
		c.Queues = []string{queue.DefaultQueue}
	}
	seen := map[string]bool{}
	for _, q := range c.Queues {
		if err := queue.ValidateQueueName(q); err != nil {
			return c, fmt.Errorf("worker: Queues: %w", err)
		}
		if seen[q] {
			return c, fmt.Errorf("worker: Queues: %q is listed twice", q)
		}
		seen[q] = true
	}
	if c.Concurrency < 0 || c.BlockingConcurrency < 0 || c.MaxTasks < 0 || c.CompletionBatchSize < 0 {
		return c, errors.New("worker: Concurrency, BlockingConcurrency, MaxTasks and CompletionBatchSize must not be negative")
	}
	for name, d := range map[string]time.Duration{"PollInterval": c.PollInterval, "FetchCooldown": c.FetchCooldown,
		"LeaseDuration": c.LeaseDuration, "MaintenanceInterval": c.MaintenanceInterval,
		"ShutdownGrace": c.ShutdownGrace, "FailedHookTimeout": c.FailedHookTimeout, "LeaderTTL": c.LeaderTTL} {
		if d < 0 {
			return c, fmt.Errorf("worker: %s is %v; it must not be negative", name, d)
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 20
	}
	if c.BlockingConcurrency == 0 {
		c.BlockingConcurrency = runtime.GOMAXPROCS(0)
	}
	c.BlockingConcurrency = min(c.BlockingConcurrency, c.Concurrency)
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.FetchCooldown == 0 {
		c.FetchCooldown = time.Millisecond
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 30 * time.Second
	}
	if c.LeaseDuration < 100*time.Millisecond {
		return c, fmt.Errorf("worker: LeaseDuration %v is too short; use at least 100ms", c.LeaseDuration)
	}
	if c.MaintenanceInterval == 0 {
		c.MaintenanceInterval = time.Second
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.FailedHookTimeout == 0 {
		c.FailedHookTimeout = 30 * time.Second
	}
	if c.LeaderTTL == 0 {
		c.LeaderTTL = 10 * time.Second
	}
	if c.LeaderTTL < 300*time.Millisecond {
		return c, fmt.Errorf("worker: LeaderTTL %v is too short; use at least 300ms", c.LeaderTTL)
	}
	var err error
	if c.Retention, err = c.Retention.withDefaults(); err != nil {
		return c, err
	}
	if c.Cron, err = c.Cron.withDefaults(); err != nil {
		return c, err
	}
	if c.CompletionBatchSize == 0 {
		c.CompletionBatchSize = 1000
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
