-- Queue controls: pause, and global limits on how many jobs of a queue run
-- at once and how many start per interval, for the whole queue and per key
-- (a payload field, e.g. a customer id), across every worker and machine.
--
-- A queue without a row here is uncontrolled, and the claim pays one
-- primary-key lookup of this small table to know it. A queue with a row is
-- claimed another way: the claim locks the row (FOR UPDATE), so claims of a
-- controlled queue run one at a time, then counts what runs and what started
-- in a statement of its own (a fresh snapshot, which sees every claim that
-- committed before the lock was granted) and claims only what the limits
-- allow. Pause is checked by the claim itself: a claim that starts after the
-- pause committed takes nothing, whatever any worker believes.
CREATE TABLE tasq_queues (
    name               text        PRIMARY KEY,
    paused_at          timestamptz,            -- NULL: not paused
    max_running        integer     CHECK (max_running > 0),
    max_starts         integer     CHECK (max_starts BETWEEN 1 AND 10000),
    starts_period_ms   bigint      CHECK (starts_period_ms > 0),
    key_path           text[]      CHECK (cardinality(key_path) > 0),
    key_max_running    integer     CHECK (key_max_running > 0),
    key_max_starts     integer     CHECK (key_max_starts BETWEEN 1 AND 10000),
    key_starts_period_ms bigint    CHECK (key_starts_period_ms > 0),
    -- The start times of the last max_starts claims, newest last: a sliding
    -- log, so that no interval of starts_period_ms, wherever it falls, holds
    -- more than max_starts starts (a fixed window or a token bucket would
    -- let up to twice as many through around a boundary).
    starts             timestamptz[] NOT NULL DEFAULT '{}',
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((max_starts IS NULL) = (starts_period_ms IS NULL)),
    CHECK ((key_max_starts IS NULL) = (key_starts_period_ms IS NULL)),
    CHECK ((key_path IS NULL) = (key_max_running IS NULL AND key_max_starts IS NULL))
);
COMMENT ON TABLE tasq_queues IS 'paused queues and global limits; a queue without a row is neither paused nor limited';

-- Per-key sliding logs of start times, for queues with key_max_starts. Rows
-- of keys that started nothing within the period are deleted by the claims.
CREATE TABLE tasq_queue_keys (
    queue      text        NOT NULL REFERENCES tasq_queues (name) ON DELETE CASCADE,
    key        text        NOT NULL,
    starts     timestamptz[] NOT NULL,
    last_start timestamptz NOT NULL,
    PRIMARY KEY (queue, key)
);
CREATE INDEX tasq_queue_keys_last_start_idx ON tasq_queue_keys (queue, last_start);
COMMENT ON TABLE tasq_queue_keys IS 'recent start times per key of queues with per-key rate limits';

-- Pause and resume from SQL. Resuming wakes the queue's workers at once
-- (they would otherwise find it at their next poll); the pause needs no
-- message, since the claim checks it.
CREATE FUNCTION tasq_pause_queue(queue text) RETURNS void
LANGUAGE sql VOLATILE
SET search_path FROM CURRENT
AS $$
    INSERT INTO tasq_queues (name, paused_at) VALUES (queue, now())
    ON CONFLICT (name) DO UPDATE SET paused_at = coalesce(tasq_queues.paused_at, now()), updated_at = now();
$$;
COMMENT ON FUNCTION tasq_pause_queue(text) IS 'stop workers from claiming jobs of the queue; running jobs finish';

CREATE FUNCTION tasq_resume_queue(queue text) RETURNS void
LANGUAGE sql VOLATILE
SET search_path FROM CURRENT
AS $$
    UPDATE tasq_queues SET paused_at = NULL, updated_at = now() WHERE name = queue;
    DELETE FROM tasq_queues
    WHERE name = queue AND max_running IS NULL AND max_starts IS NULL AND key_path IS NULL;
    SELECT pg_notify(tasq_channel(), queue);
$$;
COMMENT ON FUNCTION tasq_resume_queue(text) IS 'let workers claim jobs of the queue again, and wake them';
