DROP TABLE job_completions;
DROP INDEX jobs_due_idx;
DROP INDEX jobs_leased_idx;
CREATE INDEX jobs_due_idx    ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased_idx ON jobs (locked_until) WHERE state = 'running';
ALTER TABLE markets DROP COLUMN index_claimed_until;
ALTER TABLE markets DROP COLUMN index_claim;
