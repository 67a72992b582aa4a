-- Tallied events (refusals a client can repeat at will): one row per key (action, minute, actor,
-- client address, target), whose `details.count` the upsert on this unique index adds to, so a
-- flood adds a bounded number of rows however many instances see it. Appended events have no
-- key: NULLs never conflict.
ALTER TABLE audit_events ADD COLUMN tally_key text;

CREATE UNIQUE INDEX audit_events_tally_key_idx ON audit_events (tally_key);
