DROP TABLE IF EXISTS tasq_jobs;
DROP TYPE IF EXISTS tasq_job_state;
