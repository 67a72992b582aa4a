DROP TABLE account_tokens;
ALTER TABLE users DROP COLUMN token_epoch;
