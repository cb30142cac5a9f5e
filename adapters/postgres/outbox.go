package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasqhq/tasq/queue"
)

var _ queue.Outbox = (*Adapter)(nil)

// outboxInsertSQL writes jobs for another backend into the outbox, in the
// caller's transaction, guarded like the transactional insert: only on
// this adapter's database ($11, $12). The delay counts from the insert. Its
// NOTIFY on the outbox channel ($13) wakes the relays when the transaction
// commits.
const outboxInsertSQL = `
WITH ins AS (
INSERT INTO tasq_outbox (id, driver, kind, queue, payload, priority, max_retries, retry_delay_ms, timeout_ms, run_at)
SELECT u.id, $1, u.kind, u.queue, u.payload::jsonb, u.priority, u.max_retries, u.retry_delay_ms, u.timeout_ms,
       now() + u.delay_ms * interval '1 millisecond'
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::int[], $8::bigint[], $9::bigint[], $10::bigint[])
     AS u(id, kind, queue, payload, priority, max_retries, retry_delay_ms, timeout_ms, delay_ms)
WHERE EXISTS (SELECT 1 FROM tasq_instance WHERE id = $11) AND current_database() = $12
RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT 1 FROM (SELECT pg_notify($13, $1)) AS n)`

// OutboxTx implements queue.Outbox: it stores jobs for the backend
// registered as driver in the outbox table, inside tx (a pgx.Tx, a *sql.Tx
// or a *gorm.DB in a transaction, on this adapter's database). A Relay
// delivers them after the commit.
func (a *Adapter) OutboxTx(ctx context.Context, tx any, driver string, jobs []queue.NewJob) error {
	if driver == "" {
		return fmt.Errorf("%w: OutboxTx needs the target driver's name", queue.ErrInvalidConfig)
	}
	if err := queue.CheckNewJobs(jobs); err != nil {
		return err
	}
	query, err := txQuery(ctx, tx)
	if err != nil {
		return err
	}
	n := len(jobs)
	ids := make([]pgtype.UUID, n)
	kinds, queues, payloads := make([]string, n), make([]string, n), make([]string, n)
	prios := make([]int16, n)
	retries := make([]int32, n)
	retryMS, timeoutMS, delayMS := make([]int64, n), make([]int64, n), make([]int64, n)
	for i := range jobs {
		j := &jobs[i]
		ids[i], kinds[i], queues[i], prios[i] = pgUUID(j.ID), j.Kind, j.Queue, j.Priority
		payloads[i] = "{}"
		if len(j.Payload) > 0 {
			payloads[i] = string(j.Payload)
		}
		retries[i] = int32(j.MaxRetries)
		retryMS[i], timeoutMS[i], delayMS[i] = j.RetryDelay.Milliseconds(), j.Timeout.Milliseconds(), ceilMS(j.Delay)
	}
	var stored int
	var notified int
	err = query(ctx, a.sql.q(outboxInsertSQL),
		[]any{driver, ids, kinds, queues, payloads, prios, retries, retryMS, timeoutMS, delayMS, pgUUID(a.instance), a.database, a.sql.outbox},
		func(scan func(...any) error) error { return scan(&stored, &notified) })
	if err != nil {
		return wrapErr("store jobs in the outbox", err)
	}
	if stored != n {
		return errOtherDatabase
	}
	return nil
}

// RelayOptions configures a Relay.
type RelayOptions struct {
	// Batch is the most jobs one delivery round takes. Default 500.
	Batch int
	// Poll is the longest Run waits after a round that found nothing to
	// deliver. A transaction that writes to the outbox wakes the relays
	// when it commits (LISTEN/NOTIFY), so Poll is the safety net for a lost
	// notification. Default 1 s. Behind a transaction pooler, where the
	// adapter cannot LISTEN (WakeupsPoll), it is the relay's lag: lower it.
	Poll time.Duration
	// MaxBackoff caps the wait before a job whose delivery failed is tried
	// again (it doubles from 1 s). Default 1 minute.
	MaxBackoff time.Duration
	// Logger receives delivery failures. Default slog.Default().
	Logger *slog.Logger
}

// Relay delivers the outbox's jobs to their backends. Any number of relays
// may run at once, in workers or in a process of their own: each takes
// rows with FOR UPDATE SKIP LOCKED, so no two deliver the same row at the
// same time.
//
// Delivery is at least once. A row is deleted in the transaction that took
// it, after its backend accepted the job; a relay that dies between the two
// leaves the row, and the next round delivers the job again. A backend that
// can tell an existing ID says queue.ErrJobExists (redis does, while the job
// is kept there), which the relay counts as delivered: no second job. SQS
// standard queues cannot tell; there a crash in that window can deliver a
// job twice.
type Relay struct {
	a       *Adapter
	targets map[string]queue.Inserter
	opts    RelayOptions
	log     *slog.Logger
}

// NewRelay returns a relay from a's outbox to targets, keyed by the driver
// names the jobs were dispatched for (the names of the client's adapters:
// "redis", "sqs", or those given to queue.WithDriver).
func (a *Adapter) NewRelay(targets map[string]queue.Inserter, opts RelayOptions) (*Relay, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: NewRelay needs at least one target backend", queue.ErrInvalidConfig)
	}
	for name, t := range targets {
		if t == nil {
			return nil, fmt.Errorf("%w: NewRelay: target %q is nil", queue.ErrInvalidConfig, name)
		}
	}
	if opts.Batch < 0 || opts.Poll < 0 || opts.MaxBackoff < 0 {
		return nil, fmt.Errorf("%w: RelayOptions must not be negative", queue.ErrInvalidConfig)
	}
	if opts.Batch == 0 {
		opts.Batch = 500
	}
	if opts.Poll == 0 {
		opts.Poll = time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Relay{a: a, targets: targets, opts: opts, log: opts.Logger}, nil
}

// Run delivers until ctx is done. A round that delivered a full batch is
// followed at once by the next; otherwise Run waits for a transaction that
// wrote to the outbox to commit (LISTEN on the outbox channel), or Poll.
// Errors are logged, and retried the next round.
func (r *Relay) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	if r.a.setup.Wakeups != WakeupsPoll {
		err := r.a.listenLoop(ctx, []string{r.a.sql.outbox},
			func(*pgconn.Notification) { poke() }, poke, func() {})
		if err != nil {
			r.log.WarnContext(ctx, "the outbox relay cannot LISTEN; it polls", "poll", r.opts.Poll, "err", err)
		}
	}
	for {
		n, err := r.RelayOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.log.ErrorContext(ctx, "outbox relay round failed; retrying", "err", err)
		}
		if n >= r.opts.Batch && err == nil {
			continue
		}
		t := time.NewTimer(r.opts.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// outboxTakeSQL takes the oldest deliverable rows and locks them.
const outboxTakeSQL = `
SELECT id, driver, kind, queue, payload::text, priority, max_retries, retry_delay_ms, timeout_ms,
       greatest(ceil(extract(epoch FROM run_at - now()) * 1000), 0)::bigint, attempts
FROM tasq_outbox
WHERE failed_at IS NULL AND next_try_at <= now()
ORDER BY next_try_at, created_at
LIMIT $1
FOR UPDATE SKIP LOCKED`

// outboxRow is one taken row.
type outboxRow struct {
	job      queue.NewJob
	driver   string
	attempts int
}

// RelayOnce runs one delivery round: it takes up to Batch deliverable jobs,
// inserts each driver's jobs into its backend in one call, and deletes the
// delivered rows, all in one transaction. A job its backend refuses for good
// (a bad job: queue.ErrInvalidConfig or queue.ErrInvalidPayload) is marked
// failed with the reason and skipped from then on; a job whose driver has no
// target here, or whose backend is unreachable, is tried again later with
// backoff. It returns how many jobs it delivered.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	tx, err := r.a.pool.Begin(ctx)
	if err != nil {
		return 0, wrapErr("begin outbox round", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, r.a.sql.q(outboxTakeSQL), r.opts.Batch)
	if err != nil {
		return 0, wrapErr("take outbox rows", err)
	}
	byDriver := map[string][]outboxRow{}
	for rows.Next() {
		var o outboxRow
		var id pgtype.UUID
		var payload string
		var retries int32
		var retryMS, timeoutMS, delayMS int64
		if err := rows.Scan(&id, &o.driver, &o.job.Kind, &o.job.Queue, &payload, &o.job.Priority, &retries,
			&retryMS, &timeoutMS, &delayMS, &o.attempts); err != nil {
			rows.Close()
			return 0, wrapErr("read outbox rows", err)
		}
		o.job.ID = uuid.UUID(id.Bytes)
		o.job.Payload = []byte(payload)
		o.job.MaxRetries = int(retries)
		o.job.RetryDelay = time.Duration(retryMS) * time.Millisecond
		o.job.Timeout = time.Duration(timeoutMS) * time.Millisecond
		o.job.Delay = time.Duration(delayMS) * time.Millisecond
		byDriver[o.driver] = append(byDriver[o.driver], o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, wrapErr("read outbox rows", err)
	}
	drivers := make([]string, 0, len(byDriver))
	for d := range byDriver {
		drivers = append(drivers, d)
	}
	sort.Strings(drivers)

	var delivered []pgtype.UUID
	var retry, failed []outboxFailure
	for _, d := range drivers {
		group := byDriver[d]
		target, ok := r.targets[d]
		if !ok {
			for _, o := range group {
				retry = append(retry, outboxFailure{o, fmt.Sprintf("no relay target for driver %q", d)})
			}
			continue
		}
		sent, rest := r.deliver(ctx, target, group)
		delivered = append(delivered, sent...)
		for _, f := range rest {
			if isPermanent(f.err) {
				failed = append(failed, outboxFailure{f.row, f.err.Error()})
			} else {
				retry = append(retry, outboxFailure{f.row, f.err.Error()})
			}
		}
	}
	b := &pgx.Batch{}
	if len(delivered) > 0 {
		b.Queue(r.a.sql.q(`DELETE FROM tasq_outbox WHERE id = ANY($1)`), delivered)
	}
	for _, f := range retry {
		backoff := min(time.Second<<min(f.row.attempts, 16), r.opts.MaxBackoff)
		b.Queue(r.a.sql.q(`UPDATE tasq_outbox SET attempts = attempts + 1, last_error = $2, next_try_at = now() + $3 * interval '1 millisecond' WHERE id = $1`),
			pgUUID(f.row.job.ID), f.reason, backoff.Milliseconds())
	}
	for _, f := range failed {
		b.Queue(r.a.sql.q(`UPDATE tasq_outbox SET attempts = attempts + 1, last_error = $2, failed_at = now() WHERE id = $1`),
			pgUUID(f.row.job.ID), f.reason)
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return 0, wrapErr("record outbox deliveries", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, wrapErr("commit outbox round", err)
	}
	if len(retry)+len(failed) > 0 {
		r.log.WarnContext(ctx, "outbox jobs not delivered", "retrying", len(retry), "failed", len(failed), "first_reason", firstReason(retry, failed))
	}
	return len(delivered), nil
}

// outboxFailure is a row not delivered this round and why.
type outboxFailure struct {
	row    outboxRow
	reason string
}

type deliveryErr struct {
	row outboxRow
	err error
}

// deliver inserts group into target in one call; when that fails, one job
// at a time, so that one bad or existing job does not hold back the rest.
// A job that exists already counts as delivered.
func (r *Relay) deliver(ctx context.Context, target queue.Inserter, group []outboxRow) (ok []pgtype.UUID, failed []deliveryErr) {
	jobs := make([]queue.NewJob, len(group))
	for i, o := range group {
		jobs[i] = o.job
	}
	err := target.Insert(ctx, jobs)
	if err == nil {
		for _, o := range group {
			ok = append(ok, pgUUID(o.job.ID))
		}
		return ok, nil
	}
	if len(group) > 1 && (errors.Is(err, queue.ErrJobExists) || isPermanent(err)) {
		for _, o := range group {
			ok1, f := r.deliver(ctx, target, []outboxRow{o})
			ok, failed = append(ok, ok1...), append(failed, f...)
		}
		return ok, failed
	}
	if errors.Is(err, queue.ErrJobExists) {
		return []pgtype.UUID{pgUUID(group[0].job.ID)}, nil
	}
	for _, o := range group {
		failed = append(failed, deliveryErr{o, err})
	}
	return nil, failed
}

// isPermanent reports whether a backend refused a job for what it is, not
// for the moment: trying again cannot help.
func isPermanent(err error) bool {
	return errors.Is(err, queue.ErrInvalidConfig) || errors.Is(err, queue.ErrInvalidPayload) || errors.Is(err, errors.ErrUnsupported)
}

func firstReason(lists ...[]outboxFailure) string {
	for _, l := range lists {
		if len(l) > 0 {
			return l[0].reason
		}
	}
	return ""
}

// OutboxStat counts the outbox's rows of one driver.
type OutboxStat struct {
	Driver  string
	Pending int64 // waiting for delivery (or a retry)
	Failed  int64 // refused for good by the backend
	// Oldest is when the oldest pending row was written (zero if none):
	// how far behind the relay is.
	Oldest time.Time
}

// OutboxStats counts the outbox's rows per driver, for operators and the
// relay's lag.
func (a *Adapter) OutboxStats(ctx context.Context) ([]OutboxStat, error) {
	rows, err := a.pool.Query(ctx, a.sql.q(`
SELECT driver, count(*) FILTER (WHERE failed_at IS NULL), count(*) FILTER (WHERE failed_at IS NOT NULL),
       min(created_at) FILTER (WHERE failed_at IS NULL)
FROM tasq_outbox GROUP BY driver ORDER BY driver`))
	if err != nil {
		return nil, wrapErr("outbox stats", err)
	}
	defer rows.Close()
	var out []OutboxStat
	for rows.Next() {
		var s OutboxStat
		var oldest pgtype.Timestamptz
		if err := rows.Scan(&s.Driver, &s.Pending, &s.Failed, &oldest); err != nil {
			return nil, wrapErr("outbox stats", err)
		}
		s.Oldest = oldest.Time
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("outbox stats", err)
	}
	return out, nil
}
