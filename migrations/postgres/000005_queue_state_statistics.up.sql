-- Statistics for `tasq stats` on large tables.
--
-- Stats counts the live jobs (scheduled, available, running, retryable)
-- exactly, from the partial indexes that hold only them, and estimates the
-- finished ones (completed, failed, cancelled), which a large table holds by
-- the million: counting them would read the whole table. The estimate splits
-- the table's row count by the share of each (queue, state) pair. Those
-- shares are not the product of the shares of queue and of state (failures
-- gather in some queues), so ANALYZE keeps them together: a most-common-values
-- list over the pair, read from pg_stats_ext. It also helps the planner
-- estimate `WHERE queue = ... AND state = ...` in operators' own queries.
--
-- A statistics object costs nothing when a row is written: ANALYZE (run by
-- autovacuum after 5% of the table changed, see migration 4) builds it from
-- the sample of 30,000 rows it takes anyway. A pair of 0.25% of the table
-- (75 rows of the sample) is estimated within about a quarter. For finer
-- figures raise the object's target, e.g.
--     ALTER STATISTICS tasq_jobs_queue_state SET STATISTICS 1000;
-- then ANALYZE samples 300,000 rows instead, ten times the reading.
CREATE STATISTICS tasq_jobs_queue_state (mcv) ON queue, state FROM tasq_jobs;
COMMENT ON STATISTICS tasq_jobs_queue_state IS 'the share of each (queue, state) pair; tasq stats estimates finished jobs from it';

-- Build it now: on a table that already holds millions of jobs the next
-- automatic ANALYZE may be hours away, and until then tasq stats would have
-- to count every row.
ANALYZE tasq_jobs;
