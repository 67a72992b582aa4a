DROP INDEX audit_events_tally_key_idx;
ALTER TABLE audit_events DROP COLUMN tally_key;
