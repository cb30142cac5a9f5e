package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

// lagSQL reads, per queue, the available jobs, the run time of the oldest
// and its age by the database's clock. Its WHERE clause is the predicate of
// the claim index, which holds queue and run_at: the planner answers it with
// an index-only scan of the available jobs, as the live counts of Stats do,
// never a read of the finished ones. It runs after pinIndexSQL.
const lagSQL = `
SELECT queue, count(*), min(run_at), greatest(extract(epoch FROM clock_timestamp() - min(run_at)), 0)::float8
FROM tasq_jobs WHERE state = 'available' GROUP BY queue ORDER BY queue`

var _ queue.LagReader = (*Adapter)(nil)

// Lag implements queue.LagReader: per queue with available jobs, how many
// there are and how long the oldest has waited.
func (a *Adapter) Lag(ctx context.Context) ([]queue.QueueLag, error) {
	var out []queue.QueueLag
	b := &pgx.Batch{}
	b.Queue(pinIndexSQL)
	b.Queue(a.sql.q(lagSQL)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var l queue.QueueLag
			var secs float64
			if err := rows.Scan(&l.Queue, &l.Available, &l.Oldest, &secs); err != nil {
				return err
			}
			l.Lag = time.Duration(secs * float64(time.Second))
			out = append(out, l)
		}
		return rows.Err()
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, wrapErr("lag", err)
	}
	return out, nil
}
