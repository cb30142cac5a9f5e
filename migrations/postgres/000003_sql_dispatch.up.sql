-- Enqueue from SQL: tasq_dispatch() inserts one job exactly as the Go client
-- does, so that psql sessions, triggers and programs in other languages can
-- dispatch jobs (see README "Enqueue from SQL"). tasq_uuidv7() gives job IDs
-- the same time-ordered form as the Go client's, and becomes the default of
-- tasq_jobs.id.

-- tasq_uuidv7 returns a UUID version 7 (RFC 9562) laid out as the Go client's
-- (github.com/google/uuid NewV7): the 48-bit Unix time in milliseconds, the
-- version 7, then 12 bits of the time below the millisecond (nanoseconds / 256,
-- here from the microseconds clock_timestamp() has), then the RFC variant and
-- 62 random bits from gen_random_uuid(). IDs made further apart than a
-- microsecond sort in the order they were made; within one microsecond their
-- order is random.
CREATE FUNCTION tasq_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        overlay(uuid_send(gen_random_uuid())
                PLACING substring(int8send(t.us / 1000) FROM 3)                          -- bytes 0-5: unix ms
                        || int2send((28672 + (t.us % 1000) * 1000 / 256)::smallint)      -- 0x7000 | sub-ms
                FROM 1 FOR 8),
        'hex')::uuid
    FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us) AS t
$$;
COMMENT ON FUNCTION tasq_uuidv7() IS 'a time-ordered UUID version 7, laid out like the Go client''s job IDs';

ALTER TABLE tasq_jobs ALTER COLUMN id SET DEFAULT tasq_uuidv7();

-- tasq_dispatch inserts one job and returns its ID. It validates like the Go
-- client (queue.CheckNewJobs, queue.ValidateQueueName): a bad argument raises
-- SQLSTATE 22023 (invalid_parameter_value) naming the parameter, and nothing
-- is stored. A job whose run_at is in the future is scheduled; any other is
-- available at once, with run_at = now(), and pg_notify wakes the workers of
-- its queue. Everything happens in the caller's transaction: the job and its
-- notification exist only if it commits.
--
-- priority is an integer (checked to fit the smallint column) so that a plain
-- literal such as 5 needs no cast. Durations are stored in whole
-- milliseconds, rounded up, so that a positive timeout never becomes 0 (no
-- timeout). search_path is pinned to the one the migration ran with, so that
-- the function finds tasq_jobs whatever the caller's search_path is.
CREATE FUNCTION tasq_dispatch(
    kind        text,
    payload     jsonb       DEFAULT '{}',
    queue       text        DEFAULT 'default',
    run_at      timestamptz DEFAULT NULL,
    priority    integer     DEFAULT 0,
    max_retries integer     DEFAULT 3,
    retry_delay interval    DEFAULT '60 seconds',
    timeout     interval    DEFAULT NULL,
    id          uuid        DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    max_ms     CONSTANT numeric := 9223372036854; -- the longest Go time.Duration, in ms
    job_id     uuid;
    job_run_at timestamptz := now();
    job_state  tasq_job_state := 'available';
    retry_ms   numeric;
    timeout_ms numeric := 0;
BEGIN
    IF tasq_dispatch.kind IS NULL OR tasq_dispatch.kind = '' THEN
        RAISE EXCEPTION 'tasq_dispatch: kind is %; a job needs a kind',
                CASE WHEN tasq_dispatch.kind IS NULL THEN 'NULL' ELSE 'empty' END
            USING ERRCODE = '22023',
                  HINT = 'Pass kind, the name of the task type that runs the job (its Go type name or Kind()), as the first argument.';
    END IF;

    IF tasq_dispatch.payload IS NULL THEN
        RAISE EXCEPTION 'tasq_dispatch: payload is NULL'
            USING ERRCODE = '22023',
                  HINT = 'Pass payload as jsonb, usually an object with the task''s fields (jsonb_build_object(...)); leave it out for ''{}''.';
    END IF;

    -- The queue name rules of queue.ValidateQueueName: not empty, at most
    -- 128 bytes, no character at or below the space, and no DEL.
    IF tasq_dispatch.queue IS NULL OR tasq_dispatch.queue = '' THEN
        RAISE EXCEPTION 'tasq_dispatch: queue is %', CASE WHEN tasq_dispatch.queue IS NULL THEN 'NULL' ELSE 'empty' END
            USING ERRCODE = '22023',
                  HINT = 'Pass queue, the name of a queue your workers serve, or leave it out for ''default''.';
    END IF;
    IF octet_length(tasq_dispatch.queue) > 128 THEN
        RAISE EXCEPTION 'tasq_dispatch: queue %... is % bytes; the limit is 128',
                quote_literal(left(tasq_dispatch.queue, 20)), octet_length(tasq_dispatch.queue)
            USING ERRCODE = '22023',
                  HINT = 'Pass queue as a name of at most 128 bytes.';
    END IF;
    IF tasq_dispatch.queue ~ E'[\\x01-\\x20\\x7f]' THEN
        RAISE EXCEPTION 'tasq_dispatch: queue % contains whitespace or control characters', quote_literal(tasq_dispatch.queue)
            USING ERRCODE = '22023',
                  HINT = 'Pass queue as a name without spaces, tabs, newlines or other control characters.';
    END IF;

    IF tasq_dispatch.run_at IS NOT NULL THEN
        IF NOT isfinite(tasq_dispatch.run_at) THEN
            RAISE EXCEPTION 'tasq_dispatch: run_at is %', tasq_dispatch.run_at
                USING ERRCODE = '22023',
                      HINT = 'Pass run_at as a finite time, or NULL (the default) to run the job at once.';
        END IF;
        IF tasq_dispatch.run_at > now() THEN
            job_run_at := tasq_dispatch.run_at;
            job_state := 'scheduled';
        END IF;
    END IF;

    IF tasq_dispatch.priority IS NULL OR tasq_dispatch.priority NOT BETWEEN -32768 AND 32767 THEN
        RAISE EXCEPTION 'tasq_dispatch: priority is %; it must be between -32768 and 32767',
                coalesce(tasq_dispatch.priority::text, 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'Pass priority as a smallint (higher runs first within a queue), or leave it out for 0.';
    END IF;

    IF tasq_dispatch.max_retries IS NULL OR tasq_dispatch.max_retries NOT BETWEEN 0 AND 1000000 THEN
        RAISE EXCEPTION 'tasq_dispatch: max_retries is %; it must be between 0 and 1000000',
                coalesce(tasq_dispatch.max_retries::text, 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'Pass max_retries, the number of retries after the first attempt (0 for none), or leave it out for 3.';
    END IF;

    retry_ms := ceil(extract(epoch FROM tasq_dispatch.retry_delay) * 1000);
    IF retry_ms IS NULL OR retry_ms < 0 OR retry_ms > max_ms THEN
        RAISE EXCEPTION 'tasq_dispatch: retry_delay is %; it must be between 0 and % ms',
                coalesce(tasq_dispatch.retry_delay::text, 'NULL'), max_ms
            USING ERRCODE = '22023',
                  HINT = 'Pass retry_delay as a non-negative interval (''0'' retries at once), or leave it out for 60 seconds.';
    END IF;

    IF tasq_dispatch.timeout IS NOT NULL THEN
        timeout_ms := ceil(extract(epoch FROM tasq_dispatch.timeout) * 1000);
        IF timeout_ms < 0 OR timeout_ms > max_ms THEN
            RAISE EXCEPTION 'tasq_dispatch: timeout is %; it must be between 0 and % ms', tasq_dispatch.timeout, max_ms
                USING ERRCODE = '22023',
                      HINT = 'Pass timeout as a non-negative interval bounding one attempt, or NULL (the default) for none.';
        END IF;
    END IF;

    IF tasq_dispatch.id = '00000000-0000-0000-0000-000000000000' THEN
        RAISE EXCEPTION 'tasq_dispatch: id is the nil UUID'
            USING ERRCODE = '22023',
                  HINT = 'Pass id as a fresh UUID (tasq_uuidv7() gives a time-ordered one), or NULL (the default) to have one made.';
    END IF;
    job_id := coalesce(tasq_dispatch.id, tasq_uuidv7());

    INSERT INTO tasq_jobs (id, kind, queue, state, priority, payload, max_retries, retry_delay_ms, timeout_ms,
                           run_at, dispatched_at)
    VALUES (job_id, tasq_dispatch.kind, tasq_dispatch.queue, job_state, tasq_dispatch.priority, tasq_dispatch.payload,
            tasq_dispatch.max_retries, retry_ms, timeout_ms, job_run_at, now());

    IF job_state = 'available' THEN
        PERFORM pg_notify('tasq_jobs', tasq_dispatch.queue);
    END IF;
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION tasq_dispatch(text, jsonb, text, timestamptz, integer, integer, interval, interval, uuid) IS
    'enqueue one TasQ job in the current transaction and return its ID; see README "Enqueue from SQL"';
