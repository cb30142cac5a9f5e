-- Periodic jobs (cron): schedules live in a table, so they survive restarts
-- and deploys and can be changed at run time from Go, `tasq cron` or SQL.
--
-- Exactly one job per tick. A schedule's next tick is next_run_at. Workers
-- fire due schedules (next_run_at <= now) in a transaction each: they claim
-- the rows with FOR UPDATE SKIP LOCKED, insert the jobs (tasq_dispatch) and
-- move next_run_at past now, and commit. A second firer skips a row that is
-- claimed, and one that looks at it after the commit sees the new
-- next_run_at (a locking read re-checks its WHERE clause on the newest row
-- version), so the tick's job is inserted once however many firers run. A
-- firer that dies before its commit leaves no job and the row as it was:
-- the next firer fires the tick. Ticks are computed by the Go side
-- (queue.Timing), which reads cron expressions in the schedule's time zone;
-- next_run_at is what SQL sees of them.
--
-- Missed ticks (more than grace late: nothing fired them, e.g. during
-- downtime) follow the schedule's policy: 'run_once' dispatches one job for
-- them all, 'skip' drops them. Ticks within grace each dispatch their job.
CREATE TABLE tasq_schedules (
    name            text        PRIMARY KEY,
    cron            text,                            -- a cron expression, read in time_zone
    every_ms        bigint,                          -- or a fixed interval between ticks
    time_zone       text        NOT NULL DEFAULT 'UTC',
    missed          text        NOT NULL DEFAULT 'run_once',
    grace_ms        bigint      NOT NULL DEFAULT 60000,
    -- The job each tick dispatches, as tasq_dispatch() takes it.
    kind            text        NOT NULL,
    payload         jsonb       NOT NULL DEFAULT '{}',
    queue           text        NOT NULL DEFAULT 'default',
    priority        smallint    NOT NULL DEFAULT 0,
    max_retries     integer     NOT NULL DEFAULT 3,
    retry_delay_ms  bigint      NOT NULL DEFAULT 60000,
    timeout_ms      bigint      NOT NULL DEFAULT 0,
    -- State.
    paused          boolean     NOT NULL DEFAULT false,
    next_run_at     timestamptz,                     -- NULL: a firer computes the first tick after now
    last_run_at     timestamptz,                     -- when a tick or a trigger last dispatched a job
    last_job_id     uuid,                            -- that job
    error           text,                            -- why firers cannot compute the ticks; NULL when they can
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),

    -- The rules of queue.Schedule.Check, so that a row written with SQL is
    -- refused with the constraint's name saying what is wrong. What SQL
    -- cannot check (that a cron expression parses, that the workers know the
    -- zone) the firers check: they store the reason in error and leave the
    -- schedule alone until it is changed or resumed.
    CONSTRAINT tasq_schedules_name_valid CHECK (name <> '' AND octet_length(name) <= 128 AND name !~ E'[\\x01-\\x20\\x7f]'),
    CONSTRAINT tasq_schedules_cron_or_every CHECK ((cron IS NULL) <> (every_ms IS NULL)),
    CONSTRAINT tasq_schedules_cron_not_empty CHECK (btrim(cron) <> ''),
    CONSTRAINT tasq_schedules_every_range CHECK (every_ms BETWEEN 1000 AND 9223372036854),
    -- A zone PostgreSQL does not know is refused here ("time zone ... not
    -- recognized"); PostgreSQL knows a few Go does not (POSIX rules such as
    -- '+05'), which the firers then report in error.
    CONSTRAINT tasq_schedules_time_zone_known CHECK (('2000-01-01 00:00:00+00'::timestamptz AT TIME ZONE time_zone) IS NOT NULL),
    CONSTRAINT tasq_schedules_missed_policy CHECK (missed IN ('run_once', 'skip')),
    CONSTRAINT tasq_schedules_grace_range CHECK (grace_ms BETWEEN 1 AND 86400000),
    CONSTRAINT tasq_schedules_kind_not_empty CHECK (kind <> ''),
    CONSTRAINT tasq_schedules_queue_valid CHECK (queue <> '' AND octet_length(queue) <= 128 AND queue !~ E'[\\x01-\\x20\\x7f]'),
    CONSTRAINT tasq_schedules_max_retries_range CHECK (max_retries BETWEEN 0 AND 1000000),
    CONSTRAINT tasq_schedules_durations_range CHECK (retry_delay_ms BETWEEN 0 AND 9223372036854 AND timeout_ms BETWEEN 0 AND 9223372036854),
    CONSTRAINT tasq_schedules_next_finite CHECK (isfinite(next_run_at))
);
COMMENT ON TABLE tasq_schedules IS 'TasQ periodic jobs: one row per schedule; see README "Periodic jobs (cron)"';
COMMENT ON COLUMN tasq_schedules.next_run_at IS 'the next tick; NULL until a firer (or a resume) computes it';
COMMENT ON COLUMN tasq_schedules.missed IS 'missed ticks (more than grace_ms late): run_once dispatches one job for them all, skip drops them';

-- The firers' claim: due schedules that tick. The table is small; the index
-- keeps each worker's probe (one a second) to the rows that are due.
CREATE INDEX tasq_schedules_due_idx ON tasq_schedules (next_run_at NULLS FIRST)
    WHERE NOT paused AND error IS NULL;

-- Keeps next_run_at right when a schedule is changed with SQL, without the
-- writer having to know how ticks are computed: a changed cron expression,
-- interval or zone, or a resume (paused going false), clears next_run_at,
-- so that a firer computes the next tick from then on (ticks that passed
-- while the schedule was paused are not missed ticks: they never run), and
-- clears error, so that firers try the schedule again. A statement that sets
-- next_run_at or error itself (the Go side computes them) keeps its values.
-- updated_at follows changes of the definition and of paused, not firing.
CREATE FUNCTION tasq_schedules_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF (NEW.cron, NEW.every_ms, NEW.time_zone) IS DISTINCT FROM (OLD.cron, OLD.every_ms, OLD.time_zone)
       OR (OLD.paused AND NOT NEW.paused) THEN
        IF NEW.next_run_at IS NOT DISTINCT FROM OLD.next_run_at THEN
            NEW.next_run_at := NULL;
        END IF;
        IF NEW.error IS NOT DISTINCT FROM OLD.error THEN
            NEW.error := NULL;
        END IF;
    END IF;
    IF (NEW.name, NEW.cron, NEW.every_ms, NEW.time_zone, NEW.missed, NEW.grace_ms, NEW.kind, NEW.payload, NEW.queue,
        NEW.priority, NEW.max_retries, NEW.retry_delay_ms, NEW.timeout_ms, NEW.paused)
       IS DISTINCT FROM
       (OLD.name, OLD.cron, OLD.every_ms, OLD.time_zone, OLD.missed, OLD.grace_ms, OLD.kind, OLD.payload, OLD.queue,
        OLD.priority, OLD.max_retries, OLD.retry_delay_ms, OLD.timeout_ms, OLD.paused) THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tasq_schedules_changed BEFORE UPDATE ON tasq_schedules
    FOR EACH ROW EXECUTE FUNCTION tasq_schedules_changed();

-- tasq_trigger_schedule dispatches a schedule's job now, in the caller's
-- transaction, and returns its ID, paused or not. It leaves next_run_at
-- alone: the regular ticks go on as planned. It waits for a firer that
-- holds the row, so the two never interleave. An unknown name raises
-- SQLSTATE P0002 (no_data_found).
CREATE FUNCTION tasq_trigger_schedule(name text) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    s      tasq_schedules;
    job_id uuid;
BEGIN
    SELECT * INTO s FROM tasq_schedules AS t WHERE t.name = tasq_trigger_schedule.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tasq_trigger_schedule: no schedule is named %', quote_literal(tasq_trigger_schedule.name)
            USING ERRCODE = 'P0002',
                  HINT = 'List the schedules with SELECT name FROM tasq_schedules, or tasq cron list.';
    END IF;
    job_id := tasq_dispatch(s.kind, s.payload, s.queue, NULL, s.priority, s.max_retries,
                            s.retry_delay_ms * interval '1 millisecond', s.timeout_ms * interval '1 millisecond');
    UPDATE tasq_schedules AS t SET last_run_at = now(), last_job_id = job_id WHERE t.name = s.name;
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION tasq_trigger_schedule(text) IS 'dispatch a TasQ schedule''s job now, without moving its next tick; returns the job ID';

-- Pause and resume from SQL, as `tasq cron pause|resume` do. They return
-- whether the schedule exists. (A plain UPDATE of paused does the same.)
CREATE FUNCTION tasq_pause_schedule(name text) RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path FROM CURRENT
AS $$
    WITH u AS (UPDATE tasq_schedules AS t SET paused = true WHERE t.name = tasq_pause_schedule.name RETURNING 1)
    SELECT EXISTS (SELECT FROM u);
$$;
COMMENT ON FUNCTION tasq_pause_schedule(text) IS 'stop a TasQ schedule''s ticks until it is resumed';

CREATE FUNCTION tasq_resume_schedule(name text) RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path FROM CURRENT
AS $$
    WITH u AS (UPDATE tasq_schedules AS t SET paused = false, error = NULL WHERE t.name = tasq_resume_schedule.name RETURNING 1)
    SELECT EXISTS (SELECT FROM u);
$$;
COMMENT ON FUNCTION tasq_resume_schedule(text) IS 'let a paused TasQ schedule tick again, from its next tick after now';
