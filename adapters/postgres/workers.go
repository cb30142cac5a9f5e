package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

var (
	_ queue.WorkerRegistry = (*Adapter)(nil)
	_ queue.UnservedReader = (*Adapter)(nil)
)

// RegisterWorker implements queue.WorkerRegistry.
func (a *Adapter) RegisterWorker(ctx context.Context, w queue.WorkerInfo, ttl time.Duration) error {
	_, err := a.pool.Exec(ctx, a.sql.q(`
INSERT INTO tasq_workers (id, queues, kinds, host, pid, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
ON CONFLICT (id) DO UPDATE SET queues = EXCLUDED.queues, kinds = EXCLUDED.kinds,
    seen_at = now(), expires_at = EXCLUDED.expires_at`),
		w.ID, w.Queues, w.Kinds, w.Host, w.PID, ttl.Milliseconds())
	if err != nil {
		return wrapErr("register worker", err)
	}
	// Forget workers long gone, so the table stays as small as the fleet.
	_, _ = a.pool.Exec(ctx, a.sql.q(`DELETE FROM tasq_workers WHERE expires_at < now() - interval '1 hour'`))
	return nil
}

// UnregisterWorker implements queue.WorkerRegistry.
func (a *Adapter) UnregisterWorker(ctx context.Context, id string) error {
	if _, err := a.pool.Exec(ctx, a.sql.q(`DELETE FROM tasq_workers WHERE id = $1`), id); err != nil {
		return wrapErr("unregister worker", err)
	}
	return nil
}

// Workers implements queue.WorkerRegistry: the live workers, oldest first.
func (a *Adapter) Workers(ctx context.Context) ([]queue.WorkerInfo, error) {
	rows, err := a.pool.Query(ctx, a.sql.q(`SELECT id, queues, kinds, host, pid, started_at, seen_at
FROM tasq_workers WHERE expires_at > now() ORDER BY started_at, id`))
	if err != nil {
		return nil, wrapErr("list workers", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.WorkerInfo, error) {
		var w queue.WorkerInfo
		var pid int32
		err := r.Scan(&w.ID, &w.Queues, &w.Kinds, &w.Host, &pid, &w.StartedAt, &w.SeenAt)
		w.PID = int(pid)
		return w, err
	})
	if err != nil {
		return nil, wrapErr("list workers", err)
	}
	return out, nil
}

// Unserved implements queue.UnservedReader: available jobs whose queue and
// kind no live worker serves, by queue and kind, with the oldest's run_at.
func (a *Adapter) Unserved(ctx context.Context) ([]queue.UnservedKind, error) {
	// The live workers' (queue, kind) pairs are few: materialise them once,
	// and keep JIT out of a statement that takes milliseconds (its cost
	// estimate on a big table crossed the JIT threshold, adding ~25 ms).
	var out []queue.UnservedKind
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('jit', 'off', true)`)
	b.Queue(a.sql.q(`
WITH served AS MATERIALIZED (
    SELECT DISTINCT q, k FROM tasq_workers AS w, unnest(w.queues) AS q, unnest(w.kinds) AS k
    WHERE w.expires_at > now()
)
SELECT j.queue, j.kind, count(*), min(j.run_at) FROM tasq_jobs AS j
WHERE j.state = 'available' AND NOT EXISTS (SELECT FROM served AS s WHERE s.q = j.queue AND s.k = j.kind)
GROUP BY 1, 2 ORDER BY 4`)).Query(func(rows pgx.Rows) error {
		var err error
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.UnservedKind, error) {
			var u queue.UnservedKind
			err := r.Scan(&u.Queue, &u.Kind, &u.Count, &u.Oldest)
			return u, err
		})
		return err
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, wrapErr("unserved jobs", err)
	}
	return out, nil
}
