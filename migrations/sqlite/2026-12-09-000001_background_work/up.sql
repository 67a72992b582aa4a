-- As migrations/postgres/2026-12-09-000001_background_work. Indexing work is claimed, like
-- jobs: a runner holds the markets it is embedding (claim `index_claim`, a 16-byte id, until
-- `index_claimed_until`, microseconds), so that concurrent runners never embed the same version
-- twice. A runner that dies leaves its claim to expire.
ALTER TABLE markets ADD COLUMN index_claim BLOB CHECK (index_claim IS NULL OR length(index_claim) = 16);
ALTER TABLE markets ADD COLUMN index_claimed_until INTEGER;

-- Workers claim each kind of job apart (lanes).
DROP INDEX jobs_due_idx;
DROP INDEX jobs_leased_idx;
CREATE INDEX jobs_due_idx    ON jobs (kind, run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased_idx ON jobs (kind, locked_until) WHERE state = 'running';

-- When jobs completed, per kind, kept for a while: the throughput `markets jobs stats` reports.
CREATE TABLE job_completions (
    kind         TEXT    NOT NULL,
    completed_at INTEGER NOT NULL
) STRICT;

CREATE INDEX job_completions_completed_at_idx ON job_completions (completed_at);
