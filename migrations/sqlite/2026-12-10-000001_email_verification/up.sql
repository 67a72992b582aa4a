-- See the PostgreSQL migration of the same name. SQLite cannot change a CHECK constraint in
-- place, so account_tokens is rebuilt with the new purpose allowed, keeping its rows.
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1));

CREATE TABLE account_tokens_new (
    token_hash BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    purpose    TEXT    NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
) STRICT;
INSERT INTO account_tokens_new SELECT * FROM account_tokens;
DROP TABLE account_tokens;
ALTER TABLE account_tokens_new RENAME TO account_tokens;
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose) WHERE used_at IS NULL;

ALTER TABLE jobs RENAME COLUMN market_id TO subject_id;
