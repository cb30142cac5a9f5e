-- Claim tokens, a bounded error history, a database identity, and CHECKs for
-- values that can never be valid.

-- claim_token fences every write about one execution of a job. Each claim
-- sets it one higher; nothing ever lowers or resets it (not a hand-back, not
-- `tasq jobs retry`, which resets attempt, the retry budget). An outcome or a
-- lease renewal applies only while the job is running under the token it was
-- claimed with, so an execution that lost its claim can never write again.
ALTER TABLE tasq_jobs ADD COLUMN claim_token bigint NOT NULL DEFAULT 0 CHECK (claim_token >= 0);
COMMENT ON COLUMN tasq_jobs.claim_token IS 'fencing token: raised by every claim, never reset; guards outcomes and lease renewals';

-- The error history keeps its first entry and the newest ones, at most
-- 20 in all (queue.MaxErrorHistory); errors_omitted counts the entries
-- dropped from between them.
ALTER TABLE tasq_jobs ADD COLUMN errors_omitted integer NOT NULL DEFAULT 0 CHECK (errors_omitted >= 0);
COMMENT ON COLUMN tasq_jobs.errors_omitted IS 'error history entries dropped to keep errors at most 20 long (first and newest kept)';

-- tasq_errors_append appends entry to the history errs, keeping it at most
-- cap long: the first entry and the newest cap-1 ones.
CREATE FUNCTION tasq_errors_append(errs jsonb, entry jsonb, cap integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_array_length(errs) < cap THEN errs || jsonb_build_array(entry)
        ELSE jsonb_build_array(errs -> 0)
             || coalesce((SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements(errs) WITH ORDINALITY AS x(e, n)
                          WHERE n > jsonb_array_length(errs) - (cap - 2)), '[]'::jsonb)
             || jsonb_build_array(entry)
    END
$$;

-- Values no job can have. A row already holding one (stored by hand, or by
-- a bug) is failed here, with the reason in its error history, so that the
-- constraints hold for every row and no claim can trip over it.
UPDATE tasq_jobs SET
    state = 'failed',
    finished_at = now(),
    lease_expires_at = NULL,
    run_at = CASE WHEN isfinite(run_at) THEN run_at ELSE now() END,
    dispatched_at = CASE WHEN isfinite(dispatched_at) THEN dispatched_at ELSE now() END,
    attempt = least(attempt, 2147483646),
    max_retries = least(max_retries, 1000000),
    retry_delay_ms = least(retry_delay_ms, 9223372036854),
    timeout_ms = least(timeout_ms, 9223372036854),
    errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'error',
        'failed by migration 2: the row held a value no job can have (a time at infinity, or attempt, max_retries, '
        || 'retry_delay_ms or timeout_ms out of range); the original run_at/dispatched_at were '
        || run_at::text || ' / ' || dispatched_at::text))
WHERE NOT (isfinite(run_at) AND isfinite(dispatched_at)) OR attempt >= 2147483647 OR max_retries > 1000000
   OR retry_delay_ms > 9223372036854 OR timeout_ms > 9223372036854;

ALTER TABLE tasq_jobs ADD CONSTRAINT tasq_jobs_times_finite
    CHECK (isfinite(run_at) AND isfinite(dispatched_at));
-- attempt stays below the integer maximum so that a claim (attempt + 1) can
-- never overflow; max_retries is bounded like queue.MaxRetriesLimit.
ALTER TABLE tasq_jobs ADD CONSTRAINT tasq_jobs_attempt_range
    CHECK (attempt < 2147483647 AND max_retries <= 1000000);
-- Durations fit in Go's time.Duration (int64 nanoseconds).
ALTER TABLE tasq_jobs ADD CONSTRAINT tasq_jobs_durations_range
    CHECK (retry_delay_ms <= 9223372036854 AND timeout_ms <= 9223372036854);

-- tasq_instance names this database, so that an adapter can tell that a
-- transaction it is handed belongs to its own database.
CREATE TABLE tasq_instance (
    id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    one boolean NOT NULL DEFAULT true UNIQUE CHECK (one)
);
INSERT INTO tasq_instance DEFAULT VALUES;
COMMENT ON TABLE tasq_instance IS 'one row: a random id for this TasQ database';

-- tasq_workers lists running workers: what they serve, and until when they
-- count as alive (each refreshes its row on its heartbeat and deletes it on
-- a clean stop). `tasq stats` uses it to show available jobs that no live
-- worker can take, as in a rolling deploy before the new release is up.
CREATE TABLE tasq_workers (
    id          text        PRIMARY KEY,
    queues      text[]      NOT NULL,
    kinds       text[]      NOT NULL,
    host        text        NOT NULL DEFAULT '',
    pid         integer     NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE tasq_workers IS 'running TasQ workers, refreshed by their heartbeat; a row past expires_at is a worker gone';
