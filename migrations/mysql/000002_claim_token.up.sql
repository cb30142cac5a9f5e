-- Claim tokens and a bounded error history.
--
-- claim_token fences every write about one execution of a job. Each claim sets
-- it one higher than before, and nothing ever resets it: not a hand-back, not
-- the rescue of an expired lease, not an operator's retry (which resets the
-- retry budget in attempt instead). An outcome or a lease renewal applies only
-- while the job is running under the token its execution was claimed with, so
-- an execution that lost its claim, even on the same worker, cannot write again.
--
-- The error history keeps its first entry and the newest ones, at most 20 in
-- all (queue.MaxErrorHistory); errors_omitted counts the entries dropped from
-- between them.
--
-- Both are added as the last columns, so that MySQL 8.0.12+ and MariaDB 10.3+
-- add them in place (ALGORITHM=INSTANT) without rebuilding a large table.
-- Existing rows get token 0; their next claim gives them 1.
ALTER TABLE tasq_jobs
    ADD COLUMN claim_token BIGINT NOT NULL DEFAULT 0
        COMMENT 'fencing token: raised by every claim, never reset; guards outcomes and lease renewals',
    ADD COLUMN errors_omitted INT NOT NULL DEFAULT 0
        COMMENT 'error history entries dropped to keep errors at most 20 long (first and newest kept)';
