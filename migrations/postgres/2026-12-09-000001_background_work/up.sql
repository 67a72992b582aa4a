-- Indexing work is claimed, like jobs: a runner holds the markets it is embedding (claim
-- `index_claim` until `index_claimed_until`), so that concurrent runners, in any number of
-- processes, never embed the same version twice. A runner that dies leaves its claim to expire.
ALTER TABLE markets ADD COLUMN index_claim uuid, ADD COLUMN index_claimed_until timestamptz;

-- Workers claim each kind of job apart (lanes), so each kind's due and leased jobs are scanned
-- alone, in due order.
DROP INDEX jobs_due_idx;
DROP INDEX jobs_leased_idx;
CREATE INDEX jobs_due_idx ON jobs (kind, run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased_idx ON jobs (kind, locked_until) WHERE state = 'running';

-- When jobs completed, per kind, kept for a while: the throughput `markets jobs stats` reports.
CREATE TABLE job_completions (
    kind         text        NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_completions_completed_at_idx ON job_completions (completed_at);
