-- Revocation of every token a user holds: access tokens carry the user's token epoch at issue
-- time (claim `gen`), and a session is refused once the row's epoch has moved past it. A
-- counter, not a time, so that a token issued in the same second as a password reset is
-- revoked if it came before it and kept if it came after.
ALTER TABLE users ADD COLUMN token_epoch bigint NOT NULL DEFAULT 0 CHECK (token_epoch >= 0);

-- Single-use account tokens (password reset), stored only as the SHA-256 of the random token the
-- email carries; a used or expired row stays refused until it is deleted with its user.
CREATE TABLE account_tokens (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    purpose    text        NOT NULL CHECK (purpose IN ('password_reset')),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose) WHERE used_at IS NULL;
