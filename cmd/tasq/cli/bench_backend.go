package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/adapters/mysql"
	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

// benchRedisPrefix is appended to the Redis key prefix of the URL (default
// redis.DefaultPrefix), so that the benchmark's keys live apart from every
// other job of that prefix: "tasq:" becomes "tasq:bench:". No key of an
// adapter on the shorter prefix starts with it (they go on with job:,
// avail:, idx:, jobs, queues, ...), so the reset may delete them all.
const benchRedisPrefix = "bench:"

// benchOnBackend reports whether bench runs mode on the backend driver
// through the generic path (runBenchBackend): burn-down, continuous and
// latency on Redis and MySQL. Every other mode and backend goes to the
// PostgreSQL path, which refuses a URL of another backend.
func benchOnBackend(driver, mode string) bool {
	if driver != driverRedis && driver != driverMySQL {
		return false
	}
	switch mode {
	case "all", "burn-down", "continuous", "latency":
		return true
	}
	return false
}

// backendBench runs the three core workloads through the queue.Adapter
// seam: client.DispatchMany to insert, a worker.Worker on the adapter to
// work. It borrows bench's insert, progress and print, which touch no
// PostgreSQL, so its output lines and RESULT JSON are the same.
type backendBench struct {
	*bench
	driver string
	ad     queue.Adapter
	// reset removes the benchmark's own jobs: its key prefix on Redis, its
	// queue on MySQL.
	resetJobs func(context.Context) error
}

// runBenchBackend is `tasq bench` on a backend other than PostgreSQL.
func (a *app) runBenchBackend(ctx context.Context, cmd *cobra.Command, f *benchFlags, be backend) (err error) {
	if f.otel || f.prom || !f.limits.IsZero() {
		return fmt.Errorf("bench on %s: --otel, --prom and the queue limits run on PostgreSQL only", be.driver)
	}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	bb := &backendBench{driver: be.driver}
	switch be.driver {
	case driverRedis:
		u, prefix, perr := benchRedisURL(be.url)
		if perr != nil {
			return perr
		}
		ad, oerr := redis.New(ctx, u)
		if oerr != nil {
			return fmt.Errorf("open the redis backend: %w", oerr)
		}
		defer ad.Close()
		bb.ad = ad
		bb.resetJobs = func(ctx context.Context) error { return deleteRedisPrefix(ctx, ad, prefix) }
		fmt.Fprintf(errw, "[tasq] bench on redis, keys under %q (deleted before and after each workload)\n", prefix)
	case driverMySQL:
		if err := migrations.UpMySQL(ctx, be.url); err != nil {
			return err
		}
		ad, oerr := mysql.New(ctx, be.url)
		if oerr != nil {
			return fmt.Errorf("open the mysql backend: %w", oerr)
		}
		defer ad.Close()
		bb.ad = ad
		bb.resetJobs = func(ctx context.Context) error {
			if _, err := ad.DB().ExecContext(ctx, `DELETE FROM tasq_jobs WHERE queue = ?`, benchQueue); err != nil {
				return fmt.Errorf("clear benchmark jobs: %w", err)
			}
			return nil
		}
		fmt.Fprintf(errw, "[tasq] bench on mysql, queue %s (its jobs are deleted before and after each workload)\n", benchQueue)
	default:
		return fmt.Errorf("bench: no generic path for the %s backend", be.driver)
	}
	client, err := queue.NewClient(bb.ad)
	if err != nil {
		return err
	}
	con := newConsole(out, errw)
	bb.bench = &bench{f: f, src: bb.ad, client: client, out: con.Out(), errw: con.Err(), con: con}
	// Each workload starts after resetJobs: every completed job is its own.
	bb.markCompleted = func(context.Context) (func(context.Context) (int64, error), error) { return bb.completedJobs, nil }
	stopProfiles, err := startProfiles(f.cpuProfile, f.memProfile)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopProfiles()) }()
	modes := []string{f.mode}
	if f.mode == "all" {
		modes = []string{"burn-down", "continuous", "latency"}
	}
	for _, m := range modes {
		if err := bb.resetJobs(ctx); err != nil {
			return err
		}
		var res benchResult
		switch m {
		case "burn-down":
			res, err = bb.burnDown(ctx, "burn-down")
		case "continuous":
			res, err = bb.continuous(ctx, "continuous")
		case "latency":
			res, err = bb.latency(ctx)
		}
		if err != nil {
			return fmt.Errorf("bench %s on %s: %w", m, bb.driver, err)
		}
		bb.print(res)
	}
	return bb.resetJobs(context.WithoutCancel(ctx))
}

// benchRedisURL returns the Redis URL with the benchmark's own key prefix
// (the URL's key_prefix, or the default, followed by benchRedisPrefix).
func benchRedisURL(raw string) (string, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("bench: cannot parse the Redis URL: %w", urlErr(err))
	}
	q := u.Query()
	prefix := q.Get(redis.PrefixParam)
	if prefix == "" {
		prefix = redis.DefaultPrefix
	}
	prefix += benchRedisPrefix
	q.Set(redis.PrefixParam, prefix)
	u.RawQuery = q.Encode()
	return u.String(), prefix, nil
}

// urlErr drops the URL (and any password in it) from a *url.Error.
func urlErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// deleteRedisPrefix deletes every key under prefix (SCAN and UNLINK in
// batches), and nothing else.
func deleteRedisPrefix(ctx context.Context, ad *redis.Adapter, prefix string) error {
	c := ad.Client()
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("clear benchmark keys under %q: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("clear benchmark keys under %q: %w", prefix, err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// completedJobs counts the benchmark queue's completed jobs, from the
// backend (queue.StatsReader).
func (bb *backendBench) completedJobs(ctx context.Context) (int64, error) {
	sr, ok := bb.ad.(queue.StatsReader)
	if !ok {
		return 0, fmt.Errorf("the %s adapter cannot count jobs (no queue.StatsReader)", bb.driver)
	}
	stats, err := sr.Stats(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range stats {
		if s.Queue == benchQueue && s.State == queue.StateCompleted {
			n += s.Count
		}
	}
	return n, nil
}
