-- The audit trail of security-relevant events. Ids are UUIDv7 (time-ordered), so the primary key
-- serves the newest-first keyset pages (`WHERE id < $cursor ORDER BY id DESC LIMIT n`) at any
-- depth; the index on `at` serves the retention purge. No foreign keys: the trail outlives the
-- users and markets it names.
CREATE TABLE audit_events (
    id          uuid        PRIMARY KEY,
    at          timestamptz NOT NULL,
    action      text        NOT NULL,
    actor_id    uuid,
    target_type text,
    target_id   text,
    request_id  text,
    ip          text,
    details     jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_at_idx ON audit_events (at);
