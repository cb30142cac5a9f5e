DROP TABLE IF EXISTS tasq_workers;
DROP TABLE IF EXISTS tasq_instance;
ALTER TABLE tasq_jobs DROP CONSTRAINT IF EXISTS tasq_jobs_durations_range;
ALTER TABLE tasq_jobs DROP CONSTRAINT IF EXISTS tasq_jobs_attempt_range;
ALTER TABLE tasq_jobs DROP CONSTRAINT IF EXISTS tasq_jobs_times_finite;
DROP FUNCTION IF EXISTS tasq_errors_append(jsonb, jsonb, integer);
ALTER TABLE tasq_jobs DROP COLUMN IF EXISTS errors_omitted;
ALTER TABLE tasq_jobs DROP COLUMN IF EXISTS claim_token;
