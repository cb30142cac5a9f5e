-- The transactional outbox (queue.WithOutbox): jobs bound for another
-- backend (Redis, SQS), written in the caller's PostgreSQL transaction and
-- delivered by a relay (adapters/postgres Relay) after it commits. A row is
-- deleted once its job is delivered; one the target refuses for good stays
-- with failed_at and the reason, for an operator to see and delete.
CREATE TABLE tasq_outbox (
    id          uuid        PRIMARY KEY,            -- the job's ID, kept in the target
    driver      text        NOT NULL,               -- the target backend's driver name
    kind        text        NOT NULL,
    queue       text        NOT NULL,
    payload     jsonb       NOT NULL DEFAULT '{}',
    priority    smallint    NOT NULL DEFAULT 0,
    max_retries integer     NOT NULL DEFAULT 0,
    retry_delay_ms bigint   NOT NULL DEFAULT 0,
    timeout_ms  bigint      NOT NULL DEFAULT 0,
    run_at      timestamptz NOT NULL DEFAULT now(),  -- commit time plus the dispatch delay
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer     NOT NULL DEFAULT 0,      -- deliveries tried and failed
    next_try_at timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    failed_at   timestamptz                          -- refused for good by the target
);

-- The relay takes the oldest deliverable rows first.
CREATE INDEX tasq_outbox_next_idx ON tasq_outbox (next_try_at, created_at) WHERE failed_at IS NULL;
