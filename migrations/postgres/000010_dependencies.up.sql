-- Job dependencies (queue.After): a job that waits for other jobs is stored
-- in the new state pending and becomes available (or scheduled) when all of
-- them have completed. What a dependency that fails for good, is cancelled
-- or is deleted does to it is its dep_policy: cancel it, or run it anyway.
--
-- The release is a row trigger on tasq_jobs, so that it happens in the same
-- transaction as the write that finished the dependency, whoever wrote it:
-- a worker's outcome, an operator's cancel or delete, a plain SQL UPDATE.
-- Its WHEN clause tests has_dependants, a column of the finishing row, and
-- is false for a job no other job waits for: such jobs pay for the trigger
-- only the test of that boolean.

-- The new state. ADD VALUE runs inside the migration's transaction
-- (PostgreSQL 12+), where the new label cannot be used until it commits:
-- nothing below names 'pending' outside a PL/pgSQL body, which is read
-- when it runs. It sorts first, as it comes first in a job's life.
ALTER TYPE tasq_job_state ADD VALUE IF NOT EXISTS 'pending' BEFORE 'scheduled';

-- Every new column has a constant default or none: a change of the catalog,
-- not a rewrite of the table. The CHECKs are NOT VALID: existing rows hold
-- the defaults, which pass them.
ALTER TABLE tasq_jobs
    ADD COLUMN depends_on     uuid[],
    ADD COLUMN deps_waiting   uuid[],
    ADD COLUMN dep_policy     text,
    ADD COLUMN has_dependants boolean NOT NULL DEFAULT false;

ALTER TABLE tasq_jobs
    ADD CONSTRAINT tasq_jobs_dep_policy CHECK (dep_policy IN ('cancel', 'run')) NOT VALID,
    ADD CONSTRAINT tasq_jobs_deps_pair CHECK ((depends_on IS NULL) = (dep_policy IS NULL)) NOT VALID,
    ADD CONSTRAINT tasq_jobs_deps_no_null CHECK (array_position(depends_on, NULL) IS NULL
                                                 AND array_position(deps_waiting, NULL) IS NULL) NOT VALID;

COMMENT ON COLUMN tasq_jobs.depends_on IS 'the jobs this job waits for (After); NULL for none';
COMMENT ON COLUMN tasq_jobs.deps_waiting IS 'while pending: the dependencies not yet completed (NULL once released or cancelled)';
COMMENT ON COLUMN tasq_jobs.dep_policy IS 'what a dependency that fails, is cancelled or deleted does: cancel (this job too) or run (it anyway)';
COMMENT ON COLUMN tasq_jobs.has_dependants IS 'some job waits (or waited) for this one: finishing it releases them (tasq_release_dependants)';

-- The jobs waiting for a given job: a GIN index on deps_waiting, holding
-- only the rows that wait (deps_waiting is NULL for every other row, which
-- the index never takes in). And the pending jobs by queue, for Stats.
CREATE INDEX tasq_jobs_waiting_idx ON tasq_jobs USING gin (deps_waiting) WHERE deps_waiting IS NOT NULL;
CREATE INDEX tasq_jobs_pending_idx ON tasq_jobs (queue) WHERE deps_waiting IS NOT NULL;

-- tasq_release_dependants runs after a job some other job waits for
-- finished (completed, failed, cancelled) or was deleted before it did.
-- The pending jobs waiting for it:
--   * when it failed, was cancelled or deleted, with policy cancel: are
--     cancelled, with an entry in their error history naming it; their own
--     dependants are then handled by this trigger in turn, down the chain;
--   * otherwise (it completed, or policy run): stop waiting for it, and
--     when they wait for nothing more become available (scheduled while
--     their run_at is in the future), and the workers of their queue are
--     woken (pg_notify on tasq_channel()).
-- Each is one UPDATE of the waiting rows that computes the new value from
-- the row itself, so two dependencies finishing at once in two
-- transactions serialize on the dependant's row and neither update is lost.
-- search_path is pinned so that the unqualified names find this schema's
-- objects whoever runs the statement.
CREATE FUNCTION tasq_release_dependants() RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    dep     uuid := OLD.id;
    failed  boolean;
    what    text;
    ids     text;
    n       bigint;
    -- The time of the release. Not now(): that is when this transaction
    -- began, which may be before the dependant's own dispatch committed
    -- (this transaction then waited for its lock on the dependency), and a
    -- dependant dispatched without a delay must not look scheduled.
    t       timestamptz := clock_timestamp();
BEGIN
    IF TG_OP = 'DELETE' THEN
        failed := true;
        what := 'was deleted while ' || OLD.state::text;
    ELSE
        failed := NEW.state <> 'completed';
        what := CASE NEW.state WHEN 'failed' THEN 'failed' ELSE 'was ' || NEW.state::text END;
    END IF;

    IF failed THEN
        WITH c AS (
            UPDATE tasq_jobs AS d SET
                state = 'cancelled',
                finished_at = now(),
                deps_waiting = NULL,
                errors = tasq_errors_append(d.errors, jsonb_build_object(
                    'attempt', d.attempt, 'at', now(),
                    'error', format('dependency %s (%s) %s: cancelled, as the job''s dependency policy (cancel) says', dep, OLD.kind, what)), 20),
                errors_omitted = d.errors_omitted + CASE WHEN jsonb_array_length(d.errors) >= 20 THEN 1 ELSE 0 END
            WHERE d.deps_waiting @> ARRAY[dep] AND d.deps_waiting IS NOT NULL
              AND d.state = 'pending' AND d.dep_policy = 'cancel'
            RETURNING d.id
        )
        SELECT string_agg(c.id::text, ',') INTO ids FROM c;
        IF ids IS NOT NULL THEN
            -- Clients waiting for the cancelled jobs (queue.Client.Wait).
            PERFORM pg_notify(CASE current_schema() WHEN 'public' THEN 'tasq_done' ELSE 'tasq_done.' || current_schema() END, ids);
        END IF;
    END IF;

    WITH r AS (
        UPDATE tasq_jobs AS d SET
            deps_waiting = nullif(array_remove(d.deps_waiting, dep), '{}'),
            state = CASE WHEN cardinality(array_remove(d.deps_waiting, dep)) > 0 THEN 'pending'
                         WHEN d.run_at > t THEN 'scheduled'
                         ELSE 'available' END::tasq_job_state,
            -- Available from now: the queue's lag counts from here.
            run_at = CASE WHEN cardinality(array_remove(d.deps_waiting, dep)) > 0 THEN d.run_at
                          ELSE greatest(d.run_at, t) END
        WHERE d.deps_waiting @> ARRAY[dep] AND d.deps_waiting IS NOT NULL
          AND d.state = 'pending' AND (NOT failed OR d.dep_policy = 'run')
        RETURNING d.queue, d.state
    )
    SELECT count(pg_notify(tasq_channel(), q.queue)) INTO n
    FROM (SELECT DISTINCT r.queue FROM r WHERE r.state = 'available') AS q;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tasq_release_dependants() IS 'trigger: release (or cancel) the jobs waiting for a job that finished or was deleted';

CREATE TRIGGER tasq_jobs_release_dependants AFTER UPDATE OF state ON tasq_jobs
    FOR EACH ROW
    WHEN (OLD.has_dependants AND OLD.state IS DISTINCT FROM NEW.state
          AND NEW.state IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION tasq_release_dependants();

CREATE TRIGGER tasq_jobs_release_dependants_deleted AFTER DELETE ON tasq_jobs
    FOR EACH ROW
    WHEN (OLD.has_dependants AND OLD.state NOT IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION tasq_release_dependants();

-- Retention's archive keeps the new columns too (it copies rows by column
-- name).
ALTER TABLE tasq_jobs_archive
    ADD COLUMN depends_on     uuid[],
    ADD COLUMN deps_waiting   uuid[],
    ADD COLUMN dep_policy     text,
    ADD COLUMN has_dependants boolean NOT NULL DEFAULT false;
