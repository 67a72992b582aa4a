-- The audit trail of security-relevant events. Ids are UUIDv7 BLOBs (memcmp order is time
-- order), so the primary key serves the newest-first keyset pages at any depth; the index on
-- `at` (microseconds) serves the retention purge. No foreign keys: the trail outlives the users
-- and markets it names. `details` is a JSON object of strings.
CREATE TABLE audit_events (
    id          BLOB    NOT NULL PRIMARY KEY,
    at          INTEGER NOT NULL,
    action      TEXT    NOT NULL,
    actor_id    BLOB,
    target_type TEXT,
    target_id   TEXT,
    request_id  TEXT,
    ip          TEXT,
    details     TEXT    NOT NULL DEFAULT '{}'
) STRICT, WITHOUT ROWID;

CREATE INDEX audit_events_at_idx ON audit_events (at);
