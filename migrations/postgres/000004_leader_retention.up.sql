-- One maintenance leader, retention of finished jobs, and autovacuum
-- settings for a table that churns.

-- tasq_leader holds the maintenance leader's term. A worker becomes leader
-- with one INSERT ... ON CONFLICT that succeeds only when the term is free or
-- expired, and renews it the same way: a lease in a table, no session state,
-- so it works through PgBouncer in transaction pooling mode (a session
-- advisory lock would not).
CREATE TABLE tasq_leader (
    name        text        PRIMARY KEY DEFAULT 'maintenance',
    leader_id   text        NOT NULL,
    elected_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE tasq_leader IS 'the worker that runs maintenance (promotion, rescue, retention) until expires_at';

-- Retention finds finished jobs by their finish time. Without this index
-- every retention batch would scan the table. It costs one index entry per
-- finished job (the completion already writes a new row version, so the
-- other indexes take an entry anyway).
CREATE INDEX tasq_jobs_finished_idx ON tasq_jobs (finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

-- The archive keeps history out of the hot table when retention is set to
-- archive: the same columns, plus when the row was moved.
CREATE TABLE tasq_jobs_archive (LIKE tasq_jobs INCLUDING DEFAULTS);
ALTER TABLE tasq_jobs_archive ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE tasq_jobs_archive ADD PRIMARY KEY (id);
CREATE INDEX tasq_jobs_archive_finished_idx ON tasq_jobs_archive (finished_at);
COMMENT ON TABLE tasq_jobs_archive IS 'finished jobs moved out of tasq_jobs by retention (worker Retention.Archive)';

-- Autovacuum for a queue table. Every job leaves dead row versions behind:
-- the claim and the completion each write a new version, and retention
-- deletes the row. With the defaults (vacuum after 20% of the table is
-- dead) a table of 10M rows waits for 2M dead versions, and the claim's
-- index scans wade through them: right after a bulk delete of 500k rows a
-- burn-down fell from 16k to under 1k jobs/s until autovacuum caught up.
--   - vacuum after 1% of the table plus 1000 rows is dead, so the claim
--     index stays short whatever the table's size;
--   - vacuum after inserts too (5%), so the visibility map stays current;
--   - analyze after 5% changes (the worker's statements pin their plans, but
--     operators' queries use the statistics);
--   - no cost delay: a vacuum of this table should finish, not trickle.
-- fillfactor stays 90 (set when the table was made): every update changes
-- state, which is in the partial indexes' predicates, so updates are never
-- HOT and free space on the page buys little.
ALTER TABLE tasq_jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0
);
