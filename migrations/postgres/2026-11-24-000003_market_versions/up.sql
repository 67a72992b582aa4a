-- A per-row version, incremented by every update (under the row lock, so it only grows). Caches
-- use it to refuse writing back a value older than one they already hold.
ALTER TABLE markets ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1);
