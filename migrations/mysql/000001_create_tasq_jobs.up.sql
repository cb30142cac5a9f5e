-- tasq_jobs holds every job TasQ knows about, one row per job, for its whole life.
-- It mirrors the PostgreSQL table column for column (see README.md, "Job state in
-- SQL"); where MySQL 8 / MariaDB 10.6+ differ:
--   id                 CHAR(36) ascii, the canonical lower-case UUID text (no uuid type
--                      common to both servers; text stays readable in plain SQL)
--   state              ENUM instead of a PostgreSQL enum type (same names and order)
--   kind, queue        VARCHAR with a binary collation (case-sensitive, like text)
--   payload, result,   JSON (on MariaDB an alias of LONGTEXT with a JSON_VALID check;
--   errors             read it back as text, not re-formatted)
--   *_at               DATETIME(6) holding UTC (there is no timestamptz); TasQ writes
--                      UTC_TIMESTAMP(6), so compare with UTC_TIMESTAMP(), not NOW()
--   indexes            no partial indexes: state is a key column instead of a WHERE

CREATE TABLE tasq_jobs (
    id                CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
                      COMMENT 'job UUID, canonical lower-case text',
    kind              VARCHAR(255) NOT NULL,
    queue             VARCHAR(128) NOT NULL DEFAULT 'default',
    state             ENUM('scheduled', 'available', 'running', 'completed', 'retryable', 'failed', 'cancelled')
                      NOT NULL DEFAULT 'available',
    priority          SMALLINT NOT NULL DEFAULT 0,
    payload           JSON NOT NULL DEFAULT ('{}'),
    result            JSON NULL,
    attempt           INT NOT NULL DEFAULT 0
                      COMMENT 'number of times the job has been claimed; metadata Attempt() is attempt-1',
    max_retries       INT NOT NULL DEFAULT 3,
    retry_delay_ms    BIGINT NOT NULL DEFAULT 60000,
    timeout_ms        BIGINT NOT NULL DEFAULT 0,
    run_at            DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)) COMMENT 'UTC',
    dispatched_at     DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)) COMMENT 'UTC',
    attempted_at      DATETIME(6) NULL COMMENT 'UTC',
    attempted_by      VARCHAR(255) NULL,
    lease_expires_at  DATETIME(6) NULL COMMENT 'UTC',
    finished_at       DATETIME(6) NULL COMMENT 'UTC',
    errors            JSON NOT NULL DEFAULT ('[]')
                      COMMENT 'array of {"attempt": n, "at": timestamp, "error": text}, oldest first',
    PRIMARY KEY (id),
    CONSTRAINT tasq_jobs_kind_check CHECK (kind <> ''),
    CONSTRAINT tasq_jobs_queue_check CHECK (queue <> ''),
    CONSTRAINT tasq_jobs_attempt_check CHECK (attempt >= 0),
    CONSTRAINT tasq_jobs_max_retries_check CHECK (max_retries >= 0),
    CONSTRAINT tasq_jobs_retry_delay_check CHECK (retry_delay_ms >= 0),
    CONSTRAINT tasq_jobs_timeout_check CHECK (timeout_ms >= 0),
    -- The claim: available jobs of one queue, highest priority first, then oldest.
    -- The adapter asks for the top priority (MAX over this index), then reads
    -- that priority's rows in (run_at, id) order, so no server needs a
    -- descending index and the locking read stops after the rows it takes.
    -- Its (queue, state) prefix also serves the state counts per queue.
    INDEX tasq_jobs_claim_idx (queue, state, priority, run_at, id),
    -- The promoter: scheduled and retryable jobs whose time has come.
    INDEX tasq_jobs_due_idx (state, run_at),
    -- The rescuer: running jobs whose lease has expired.
    INDEX tasq_jobs_lease_idx (state, lease_expires_at),
    -- Operators: jobs of a kind, newest first.
    INDEX tasq_jobs_kind_idx (kind, dispatched_at)
) ENGINE = InnoDB
  DEFAULT CHARACTER SET = utf8mb4
  COLLATE = utf8mb4_bin
  COMMENT = 'TasQ jobs: one row per dispatched job; see README "Job state in SQL".';
