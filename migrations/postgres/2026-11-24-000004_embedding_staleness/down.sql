DROP TRIGGER markets_stale_embedding ON markets;
DROP FUNCTION markets_stale_embedding();
ALTER TABLE markets DROP COLUMN embedding_stale;
