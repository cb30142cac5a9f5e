-- Back to migration 11: the eighteen CHECK constraints, under their old
-- names. Those that migrations 1 and 2 created validated are validated
-- again (a scan of tasq_jobs; every row written under migration 12 kept
-- their rules); the others stay NOT VALID, as they were.
ALTER TABLE tasq_jobs DROP CONSTRAINT tasq_jobs_valid;
DROP FUNCTION tasq_job_invalid(text, text, integer, integer, bigint, integer, bigint, bigint,
    timestamptz, timestamptz, jsonb, text[], uuid[], uuid[], text, bytea, smallint);

ALTER TABLE tasq_jobs
    ADD CONSTRAINT tasq_jobs_kind_check CHECK (kind <> ''),
    ADD CONSTRAINT tasq_jobs_queue_check CHECK (queue <> ''),
    ADD CONSTRAINT tasq_jobs_attempt_check CHECK (attempt >= 0),
    ADD CONSTRAINT tasq_jobs_max_retries_check CHECK (max_retries >= 0),
    ADD CONSTRAINT tasq_jobs_retry_delay_ms_check CHECK (retry_delay_ms >= 0),
    ADD CONSTRAINT tasq_jobs_timeout_ms_check CHECK (timeout_ms >= 0),
    ADD CONSTRAINT tasq_jobs_claim_token_check CHECK (claim_token >= 0),
    ADD CONSTRAINT tasq_jobs_errors_omitted_check CHECK (errors_omitted >= 0),
    ADD CONSTRAINT tasq_jobs_times_finite CHECK (isfinite(run_at) AND isfinite(dispatched_at)),
    ADD CONSTRAINT tasq_jobs_attempt_range CHECK (attempt < 2147483647 AND max_retries <= 1000000),
    ADD CONSTRAINT tasq_jobs_durations_range CHECK (retry_delay_ms <= 9223372036854 AND timeout_ms <= 9223372036854),
    ADD CONSTRAINT tasq_jobs_meta_object CHECK (jsonb_typeof(meta) = 'object') NOT VALID,
    ADD CONSTRAINT tasq_jobs_tags_no_null CHECK (array_position(tags, NULL) IS NULL) NOT VALID,
    ADD CONSTRAINT tasq_jobs_unique_pair CHECK ((unique_key IS NULL) = (unique_states IS NULL)) NOT VALID,
    ADD CONSTRAINT tasq_jobs_unique_key_length CHECK (octet_length(unique_key) BETWEEN 1 AND 256) NOT VALID,
    ADD CONSTRAINT tasq_jobs_dep_policy CHECK (dep_policy IN ('cancel', 'run')) NOT VALID,
    ADD CONSTRAINT tasq_jobs_deps_pair CHECK ((depends_on IS NULL) = (dep_policy IS NULL)) NOT VALID,
    ADD CONSTRAINT tasq_jobs_deps_no_null CHECK (array_position(depends_on, NULL) IS NULL
                                                 AND array_position(deps_waiting, NULL) IS NULL) NOT VALID;
