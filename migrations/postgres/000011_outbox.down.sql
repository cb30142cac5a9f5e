-- Undelivered outbox rows are lost with the table: run the relay dry first.
DROP TABLE IF EXISTS tasq_outbox;
