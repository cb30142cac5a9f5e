-- Back to migration 8: no unique jobs, tags or metadata. The columns are
-- dropped with what they hold; the jobs stay.
ALTER TABLE tasq_jobs_archive
    DROP COLUMN unique_states,
    DROP COLUMN unique_key,
    DROP COLUMN meta,
    DROP COLUMN tags;
DROP INDEX tasq_jobs_unique_idx;
ALTER TABLE tasq_jobs
    DROP COLUMN unique_states,
    DROP COLUMN unique_key,
    DROP COLUMN meta,
    DROP COLUMN tags;
DROP FUNCTION tasq_unique_held(smallint, tasq_job_state);
