-- Back to migration 9: no job dependencies. Jobs still waiting for others
-- (pending) are cancelled, with an entry in their error history: the code
-- of migration 9 would never release them, and running them without their
-- dependencies could do the wrong thing. Retry them (`tasq jobs retry`) to
-- run them anyway.
--
-- The label 'pending' stays in the type tasq_job_state: PostgreSQL cannot
-- remove a value from an enum, and rebuilding the type would rewrite
-- tasq_jobs and every index, function and statistics object that names the
-- type. No row holds it after this migration and the code of migration 9
-- never writes it; migrating up again adds it only if it is missing.
DROP TRIGGER tasq_jobs_release_dependants_deleted ON tasq_jobs;
DROP TRIGGER tasq_jobs_release_dependants ON tasq_jobs;
DROP FUNCTION tasq_release_dependants();

UPDATE tasq_jobs SET
    state = 'cancelled',
    finished_at = now(),
    errors = tasq_errors_append(errors, jsonb_build_object('attempt', attempt, 'at', now(),
        'error', 'cancelled by migration 10 down: the job was waiting for other jobs, which this schema version cannot track'), 20)
WHERE state = 'pending';

ALTER TABLE tasq_jobs_archive
    DROP COLUMN has_dependants,
    DROP COLUMN dep_policy,
    DROP COLUMN deps_waiting,
    DROP COLUMN depends_on;
DROP INDEX tasq_jobs_pending_idx;
DROP INDEX tasq_jobs_waiting_idx;
ALTER TABLE tasq_jobs
    DROP COLUMN has_dependants,
    DROP COLUMN dep_policy,
    DROP COLUMN deps_waiting,
    DROP COLUMN depends_on;
