package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasqhq/tasq/queue"
)

var (
	_ queue.LeaderElector = (*Adapter)(nil)
	_ queue.Purger        = (*Adapter)(nil)
)

// tryLeadSQL takes the maintenance leader's term for worker $1 when it is
// free or expired, or extends $1's own term, in one statement (no session
// state: it works through transaction poolers). It returns a row only when
// $1 leads.
const tryLeadSQL = `
INSERT INTO tasq_leader (name, leader_id, expires_at) VALUES ('maintenance', $1, now() + $2 * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE SET
    leader_id = EXCLUDED.leader_id,
    expires_at = EXCLUDED.expires_at,
    elected_at = CASE WHEN tasq_leader.leader_id = EXCLUDED.leader_id THEN tasq_leader.elected_at ELSE now() END
WHERE tasq_leader.leader_id = EXCLUDED.leader_id OR tasq_leader.expires_at < now()
RETURNING leader_id`

// TryLead implements queue.LeaderElector.
func (a *Adapter) TryLead(ctx context.Context, workerID string, ttl time.Duration) (bool, error) {
	var id string
	err := a.pool.QueryRow(ctx, a.sql.q(tryLeadSQL), workerID, ttl.Milliseconds()).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrapErr("leader election", err)
	}
	return true, nil
}

// Resign implements queue.LeaderElector.
func (a *Adapter) Resign(ctx context.Context, workerID string) error {
	if _, err := a.pool.Exec(ctx, a.sql.q(`DELETE FROM tasq_leader WHERE name = 'maintenance' AND leader_id = $1`), workerID); err != nil {
		return wrapErr("resign the lead", err)
	}
	return nil
}

// Leader returns the worker that leads maintenance now and when its term
// ends, or "" when none does.
func (a *Adapter) Leader(ctx context.Context) (id string, until time.Time, err error) {
	err = a.pool.QueryRow(ctx, a.sql.q(`SELECT leader_id, expires_at FROM tasq_leader WHERE name = 'maintenance' AND expires_at > now()`)).Scan(&id, &until)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, wrapErr("read the leader", err)
	}
	return id, until, nil
}

// purgeWhere selects finished jobs by state ($1), age ($2 ms), queue ($3,
// ” for any) and queues left out ($4). The literal state list lets the
// planner use tasq_jobs_finished_idx whatever $1 is.
const purgeWhere = `
    state IN ('completed', 'failed', 'cancelled') AND state = $1::tasq_job_state
    AND finished_at < now() - $2 * interval '1 millisecond'
    AND ($3 = '' OR queue = $3) AND NOT (queue = ANY($4::text[]))`

const purgeSQL = `
WITH doomed AS (
    SELECT id FROM tasq_jobs WHERE` + purgeWhere + `
    ORDER BY finished_at LIMIT $5
    FOR UPDATE SKIP LOCKED
)
DELETE FROM tasq_jobs AS j USING doomed WHERE j.id = doomed.id`

// jobColumnList is every column of tasq_jobs, for moving rows to the archive.
const jobColumnList = `id, kind, queue, state, priority, payload, result, attempt, max_retries, retry_delay_ms,
    timeout_ms, run_at, dispatched_at, attempted_at, attempted_by, lease_expires_at, finished_at, errors,
    claim_token, errors_omitted, tags, meta, unique_key, unique_states,
    depends_on, deps_waiting, dep_policy, has_dependants`

const archiveSQL = `
WITH doomed AS (
    SELECT id FROM tasq_jobs WHERE` + purgeWhere + `
    ORDER BY finished_at LIMIT $5
    FOR UPDATE SKIP LOCKED
), moved AS (
    DELETE FROM tasq_jobs AS j USING doomed WHERE j.id = doomed.id
    RETURNING j.*
)
INSERT INTO tasq_jobs_archive (` + jobColumnList + `)
SELECT ` + jobColumnList + ` FROM moved
ON CONFLICT (id) DO NOTHING`

func purgeArgs(f queue.PurgeFilter) []any {
	except := f.ExceptQueues
	if except == nil {
		except = []string{}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	return []any{string(f.State), f.OlderThan.Milliseconds(), f.Queue, except, limit}
}

// Purge implements queue.Purger: one bounded batch, oldest first.
func (a *Adapter) Purge(ctx context.Context, f queue.PurgeFilter) (int, error) {
	if err := f.Check(); err != nil {
		return 0, err
	}
	sql := purgeSQL
	if f.Archive {
		sql = archiveSQL
	}
	var n int64
	b := &pgx.Batch{}
	b.Queue(pinnedPlanSQL)
	b.Queue(a.sql.q(sql), purgeArgs(f)...).Exec(func(ct pgconn.CommandTag) error {
		n = ct.RowsAffected()
		return nil
	})
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, wrapErr(fmt.Sprintf("purge %s jobs", f.State), err)
	}
	return int(n), nil
}

// CountPurgeable implements queue.Purger.
func (a *Adapter) CountPurgeable(ctx context.Context, f queue.PurgeFilter) (int64, error) {
	if err := f.Check(); err != nil {
		return 0, err
	}
	args := purgeArgs(f)[:4]
	var n int64
	if err := a.pool.QueryRow(ctx, a.sql.q(`SELECT count(*) FROM tasq_jobs WHERE`+purgeWhere), args...).Scan(&n); err != nil {
		return 0, wrapErr(fmt.Sprintf("count %s jobs", f.State), err)
	}
	return n, nil
}
