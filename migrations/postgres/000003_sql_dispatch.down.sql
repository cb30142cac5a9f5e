DROP FUNCTION IF EXISTS tasq_dispatch(text, jsonb, text, timestamptz, integer, integer, interval, interval, uuid);
ALTER TABLE tasq_jobs ALTER COLUMN id DROP DEFAULT;
DROP FUNCTION IF EXISTS tasq_uuidv7();
