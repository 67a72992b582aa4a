-- Idempotency keys of market creates, as in migrations/postgres/ (same name): one row per
-- creator and key, written in the transaction that creates the market, kept until `expires_at`.
CREATE TABLE idempotency_keys (
    user_id         BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE CHECK (length(user_id) = 16),
    idempotency_key TEXT    NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint     TEXT    NOT NULL,
    market_id       BLOB    NOT NULL CHECK (length(market_id) = 16),
    response        TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
) STRICT;

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
