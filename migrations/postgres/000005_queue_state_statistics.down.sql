DROP STATISTICS IF EXISTS tasq_jobs_queue_state;
