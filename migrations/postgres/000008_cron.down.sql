-- Back to migration 7: no periodic jobs. The schedules are dropped; jobs
-- they dispatched stay in tasq_jobs.
DROP FUNCTION tasq_resume_schedule(text);
DROP FUNCTION tasq_pause_schedule(text);
DROP FUNCTION tasq_trigger_schedule(text);
DROP TABLE tasq_schedules;
DROP FUNCTION tasq_schedules_changed();
