package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

var _ queue.ThroughputReader = (*Adapter)(nil)

// throughputSQL counts the finished jobs per interval: $1 is since, $2 the
// step in microseconds. Its WHERE clause holds the predicate of
// tasq_jobs_finished_idx (finished_at, on the finished states), so the
// planner reads the index from since onwards and visits only the rows
// finished since then (for their state), never the rest of the table. The
// interval's number is computed in whole microseconds: extract gives the
// exact (numeric) age.
const throughputSQL = `
SELECT floor(extract(epoch FROM finished_at - $1::timestamptz) * 1000000 / $2::bigint)::bigint AS n,
       count(*) FILTER (WHERE state = 'completed'),
       count(*) FILTER (WHERE state = 'failed'),
       count(*) FILTER (WHERE state = 'cancelled')
FROM tasq_jobs
WHERE state IN ('completed', 'failed', 'cancelled') AND finished_at >= $1::timestamptz
GROUP BY n ORDER BY n`

// Throughput implements queue.ThroughputReader with one statement over the
// index of finish times (see throughputSQL).
func (a *Adapter) Throughput(ctx context.Context, since time.Time, step time.Duration) ([]queue.ThroughputPoint, error) {
	if step < time.Microsecond {
		return nil, fmt.Errorf("tasq/postgres: throughput step %v: use at least 1µs", step)
	}
	step = step.Truncate(time.Microsecond)
	since = since.Truncate(time.Microsecond) // the database keeps microseconds
	var out []queue.ThroughputPoint
	b := &pgx.Batch{}
	b.Queue(serialPlanSQL)
	b.Queue(a.sql.q(throughputSQL), since, step.Microseconds()).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var n int64
			var p queue.ThroughputPoint
			if err := rows.Scan(&n, &p.Completed, &p.Failed, &p.Cancelled); err != nil {
				return err
			}
			p.At = since.Add(time.Duration(n) * step)
			out = append(out, p)
		}
		return rows.Err()
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, wrapErr("throughput", err)
	}
	return out, nil
}
