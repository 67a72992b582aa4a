ALTER TABLE jobs RENAME COLUMN subject_id TO market_id;
DELETE FROM jobs WHERE kind IN ('send_email_verification', 'send_password_reset');
DELETE FROM account_tokens WHERE purpose = 'email_verification';
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('password_reset'));
ALTER TABLE users DROP COLUMN email_verified;
