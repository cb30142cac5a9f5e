DROP FUNCTION tasq_resume_queue(text);
DROP FUNCTION tasq_pause_queue(text);
DROP TABLE tasq_queue_keys;
DROP TABLE tasq_queues;
