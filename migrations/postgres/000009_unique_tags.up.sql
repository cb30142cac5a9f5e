-- Unique jobs, tags and metadata.
--
-- Every new column has a constant default or none, so adding them to a big
-- tasq_jobs is a change of the catalog, not a rewrite of the table
-- (PostgreSQL 11+). The CHECKs are NOT VALID: every existing row has the
-- defaults, which pass them, so there is nothing to scan for; new and
-- changed rows are checked as usual.
ALTER TABLE tasq_jobs
    ADD COLUMN tags          text[]   NOT NULL DEFAULT '{}',
    ADD COLUMN meta          jsonb    NOT NULL DEFAULT '{}',
    ADD COLUMN unique_key    bytea,
    ADD COLUMN unique_states smallint;

ALTER TABLE tasq_jobs
    ADD CONSTRAINT tasq_jobs_meta_object CHECK (jsonb_typeof(meta) = 'object') NOT VALID,
    ADD CONSTRAINT tasq_jobs_tags_no_null CHECK (array_position(tags, NULL) IS NULL) NOT VALID,
    ADD CONSTRAINT tasq_jobs_unique_pair CHECK ((unique_key IS NULL) = (unique_states IS NULL)) NOT VALID,
    ADD CONSTRAINT tasq_jobs_unique_key_length CHECK (octet_length(unique_key) BETWEEN 1 AND 256) NOT VALID;

COMMENT ON COLUMN tasq_jobs.tags IS 'labels the dispatch gave the job (WithTags); find them with tags @> ''{tag}''';
COMMENT ON COLUMN tasq_jobs.meta IS 'a JSON object the dispatch attached to the job (WithMeta)';
COMMENT ON COLUMN tasq_jobs.unique_key IS 'unique jobs: a hash of the key (kind, chosen fields, queue, period); NULL for a job that is not unique';
COMMENT ON COLUMN tasq_jobs.unique_states IS 'unique jobs: the states in which the job holds its key, one bit per state (tasq_unique_held)';

-- tasq_unique_held says whether a job in state holds its unique key: bit i
-- of states stands for the i-th state of tasq_job_state (scheduled 1,
-- available 2, running 4, completed 8, retryable 16, failed 32, cancelled
-- 64), as queue.UniqueStateBits makes it. It is IMMUTABLE, as an index
-- predicate must be: the labels are constants of the enum.
CREATE FUNCTION tasq_unique_held(states smallint, state tasq_job_state) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (states & CASE state
        WHEN 'scheduled' THEN 1
        WHEN 'available' THEN 2
        WHEN 'running'   THEN 4
        WHEN 'completed' THEN 8
        WHEN 'retryable' THEN 16
        WHEN 'failed'    THEN 32
        WHEN 'cancelled' THEN 64
    END::smallint) <> 0
$$;
COMMENT ON FUNCTION tasq_unique_held(smallint, tasq_job_state) IS 'whether a unique job in this state holds its key (states: one bit per state)';

-- One job per key among the jobs that hold theirs. Dispatch inserts with ON
-- CONFLICT on this index, so two dispatchers of one key cannot both get a
-- job in: the second waits for the first's transaction and then conflicts
-- (or inserts, if it rolled back). A job stops holding its key when it moves
-- to a state outside its unique_states (its row's new version is not in
-- this index); jobs that are not unique (unique_key NULL) are never in it,
-- and cost the index nothing but the test of the predicate's first term.
-- Building it reads the table once (a few seconds at ten million jobs,
-- during which inserts wait).
CREATE UNIQUE INDEX tasq_jobs_unique_idx ON tasq_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND tasq_unique_held(unique_states, state);

-- No index on tags: `tasq jobs list --tag` walks the primary key newest
-- first and tests each row's tags, as it does for --kind, and stops after a
-- page. A GIN index would take an entry for every row version, empty tag
-- arrays included, on every claim and every outcome (state changes are
-- never HOT updates): the hot path would pay for an operator's listing.
-- Add one yourself if you query rare tags over a big table:
--   CREATE INDEX CONCURRENTLY ON tasq_jobs USING gin (tags);

-- Retention's archive keeps the new columns too (it copies rows by column
-- name).
ALTER TABLE tasq_jobs_archive
    ADD COLUMN tags          text[]   NOT NULL DEFAULT '{}',
    ADD COLUMN meta          jsonb    NOT NULL DEFAULT '{}',
    ADD COLUMN unique_key    bytea,
    ADD COLUMN unique_states smallint;
