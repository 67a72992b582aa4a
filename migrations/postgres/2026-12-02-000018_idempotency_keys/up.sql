-- Idempotency keys of market creates (v1.1): one row per creator and key, written in the
-- transaction that creates the market (so neither exists without the other), with the market
-- as that create returned it, which a repeat of the request gets back. A row counts until
-- `expires_at` (24 hours); `serve` deletes expired rows hourly.
CREATE TABLE idempotency_keys (
    user_id         UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key TEXT        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- A digest of what the request asked for: a repeat with another is refused.
    fingerprint     TEXT        NOT NULL,
    -- No foreign key: a repeat after the market was deleted still gets the first answer.
    market_id       UUID        NOT NULL,
    -- The market as the first request returned it (the domain's JSON form).
    response        TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
