-- Schemas: two apps can share one database, each with the TasQ tables in a
-- schema of its own (the adapter's Schema setting, URL parameter
-- tasq_schema). The migrations run with search_path set to that schema, so
-- every object lands there; the adapter names the schema in every statement.
--
-- What was not per schema is the wake-up channel: tasq_dispatch() notified
-- 'tasq_jobs' whatever its schema, so one app's SQL dispatches would wake the
-- other's workers and never its own. tasq_channel() names the channel of the
-- schema it lives in: 'tasq_jobs' in public, as before, and
-- 'tasq_jobs.<schema>' in any other (the Go adapter's ChannelFor says the
-- same). Its search_path is pinned to the one this migration runs with, so
-- current_schema() inside it is that schema whoever calls it. Programs in
-- other languages can LISTEN on it: SELECT tasq_channel().
CREATE FUNCTION tasq_channel() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
    SELECT CASE current_schema() WHEN 'public' THEN 'tasq_jobs' ELSE 'tasq_jobs.' || current_schema() END
$$;
COMMENT ON FUNCTION tasq_channel() IS 'the LISTEN/NOTIFY channel on which this schema''s TasQ workers wait for new jobs';

-- tasq_dispatch() (migration 3) now notifies tasq_channel(). Its definition
-- is read back and changed in that one call, rather than repeated here, so
-- that the function keeps one written copy; the change is checked, so a
-- definition that no longer has the call fails the migration.
DO $$
DECLARE
    def     text := pg_get_functiondef('tasq_dispatch(text, jsonb, text, timestamptz, integer, integer, interval, interval, uuid)'::regprocedure);
    old     text := $q$pg_notify('tasq_jobs', tasq_dispatch.queue)$q$;
    new     text := $q$pg_notify(tasq_channel(), tasq_dispatch.queue)$q$;
BEGIN
    IF position(old IN def) = 0 THEN
        RAISE EXCEPTION 'tasq migration 6: tasq_dispatch() does not call %; was it changed by hand?', old;
    END IF;
    EXECUTE replace(def, old, new);
END
$$;
