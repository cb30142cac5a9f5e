ALTER TABLE tasq_jobs DROP COLUMN errors_omitted, DROP COLUMN claim_token;
