-- tasq_jobs holds every job TasQ knows about, one row per job, for its whole life.
-- The columns are documented in README.md ("Job state in SQL") and are part of the
-- public contract: queries written against them keep working across releases.

CREATE TYPE tasq_job_state AS ENUM (
    'scheduled',  -- waiting for run_at (dispatched with a delay)
    'available',  -- ready to be claimed by a worker
    'running',    -- claimed; a worker holds its lease
    'completed',  -- Handle returned without error; result holds its value
    'retryable',  -- an attempt failed; it runs again at run_at
    'failed',     -- out of retries (or not retryable); errors holds the history
    'cancelled'   -- cancelled by an operator or by the task itself
);

CREATE TABLE tasq_jobs (
    id                uuid           PRIMARY KEY,
    kind              text           NOT NULL CHECK (kind <> ''),
    queue             text           NOT NULL DEFAULT 'default' CHECK (queue <> ''),
    state             tasq_job_state NOT NULL DEFAULT 'available',
    priority          smallint       NOT NULL DEFAULT 0,
    payload           jsonb          NOT NULL DEFAULT '{}',
    result            jsonb,
    attempt           integer        NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_retries       integer        NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    retry_delay_ms    bigint         NOT NULL DEFAULT 60000 CHECK (retry_delay_ms >= 0),
    timeout_ms        bigint         NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0),
    run_at            timestamptz    NOT NULL DEFAULT now(),
    dispatched_at     timestamptz    NOT NULL DEFAULT now(),
    attempted_at      timestamptz,
    attempted_by      text,
    lease_expires_at  timestamptz,
    finished_at       timestamptz,
    errors            jsonb          NOT NULL DEFAULT '[]'
) WITH (fillfactor = 90);

COMMENT ON TABLE tasq_jobs IS 'TasQ jobs: one row per dispatched job; see README "Job state in SQL".';
COMMENT ON COLUMN tasq_jobs.attempt IS 'number of times the job has been claimed; metadata Attempt() is attempt-1';
COMMENT ON COLUMN tasq_jobs.errors IS 'array of {"attempt": n, "at": timestamp, "error": text}, oldest first';

-- The claim query: available jobs of one queue, highest priority first, then oldest.
CREATE INDEX tasq_jobs_claim_idx ON tasq_jobs (queue, priority DESC, run_at, id)
    WHERE state = 'available';

-- The promoter: scheduled and retryable jobs whose time has come.
CREATE INDEX tasq_jobs_due_idx ON tasq_jobs (run_at)
    WHERE state IN ('scheduled', 'retryable');

-- The rescuer: running jobs whose lease has expired.
CREATE INDEX tasq_jobs_lease_idx ON tasq_jobs (lease_expires_at)
    WHERE state = 'running';

-- No other indexes: every claim and every outcome rewrites the row, and each
-- index costs an insert per rewrite. Operator queries (by kind, state counts)
-- scan the table; delete finished jobs you no longer need to keep it small.
