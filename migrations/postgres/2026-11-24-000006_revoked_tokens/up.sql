-- Tokens revoked by logout, until they would have expired. Redis answers the per-request check;
-- this table is the durable record it falls back to when Redis is unreachable.
CREATE TABLE revoked_tokens (
    token_id   text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);
