ALTER TABLE jobs RENAME COLUMN subject_id TO market_id;
DELETE FROM jobs WHERE kind IN ('send_email_verification', 'send_password_reset');
CREATE TABLE account_tokens_old (
    token_hash BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    purpose    TEXT    NOT NULL CHECK (purpose IN ('password_reset')),
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
) STRICT;
INSERT INTO account_tokens_old SELECT * FROM account_tokens WHERE purpose = 'password_reset';
DROP TABLE account_tokens;
ALTER TABLE account_tokens_old RENAME TO account_tokens;
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose) WHERE used_at IS NULL;
ALTER TABLE users DROP COLUMN email_verified;
