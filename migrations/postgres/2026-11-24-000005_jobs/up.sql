-- The outbox: work a change schedules, written in the same transaction as the change, so a
-- committed market always has its jobs and a rolled-back one never does. Workers claim due
-- jobs with FOR UPDATE SKIP LOCKED under a lease; a job whose worker died is due again when
-- its lease expires. Finished jobs are deleted; failed ones are retried, then parked as dead.
CREATE TABLE jobs (
    id           uuid        PRIMARY KEY,
    kind         text        NOT NULL,
    market_id    uuid        NOT NULL, -- no foreign key: a job may outlive its market
    state        text        NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'dead')),
    attempts     integer     NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- What workers scan: due queued jobs, and running ones whose lease may have expired.
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased_idx ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_dead_idx ON jobs (updated_at DESC) WHERE state = 'dead';

-- Wakes listening workers at once instead of at their next poll.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();
