ALTER TABLE tasq_jobs RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_delay);
DROP TABLE IF EXISTS tasq_jobs_archive;
DROP INDEX IF EXISTS tasq_jobs_finished_idx;
DROP TABLE IF EXISTS tasq_leader;
