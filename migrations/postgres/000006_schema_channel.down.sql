-- Back to migration 5: tasq_dispatch() notifies the fixed channel 'tasq_jobs'.
DO $$
DECLARE
    def     text := pg_get_functiondef('tasq_dispatch(text, jsonb, text, timestamptz, integer, integer, interval, interval, uuid)'::regprocedure);
    old     text := $q$pg_notify(tasq_channel(), tasq_dispatch.queue)$q$;
    new     text := $q$pg_notify('tasq_jobs', tasq_dispatch.queue)$q$;
BEGIN
    IF position(old IN def) = 0 THEN
        RAISE EXCEPTION 'tasq migration 6 down: tasq_dispatch() does not call %; was it changed by hand?', old;
    END IF;
    EXECUTE replace(def, old, new);
END
$$;

DROP FUNCTION tasq_channel();
