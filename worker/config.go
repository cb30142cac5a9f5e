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
	// MaxTasks, when positive, makes Run return after that many jobs have been
	// claimed and finished: a batch run.
	MaxTasks int
	// CompletionBatchSize caps the outcomes written in one statement. Default 1000.
	CompletionBatchSize int
	// Resolver, when set, runs before every attempt's Handle to load what the
	// payload only refers to, such as ORM models (see package ormref): the
	// guide's session for re-fetching models.
	Resolver queue.Resolver
	// ID names the worker in attempted_by and in logs. Default host-pid-random.
	ID string
	// Logger receives the worker's logs. Default slog.Default().
	Logger *slog.Logger
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
		"ShutdownGrace": c.ShutdownGrace, "FailedHookTimeout": c.FailedHookTimeout} {
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
