-- Verified addresses: only they get market notifications. Accounts from before this migration
-- start unverified; a password reset (whose link reaches the address) verifies them.
ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

-- Verification links are single-use account tokens too (valid 24 h).
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('password_reset', 'email_verification'));

-- Jobs now concern a market or, for the account emails, a user: the kind says which.
ALTER TABLE jobs RENAME COLUMN market_id TO subject_id;
