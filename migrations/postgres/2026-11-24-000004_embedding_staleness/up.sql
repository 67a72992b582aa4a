-- Whether a market's embedding is missing or out of date. Set in the same statement as the
-- change that stales it (by this trigger, whoever writes), so a crash between a market's commit
-- and its embedding leaves the market pending, never forgotten; the indexer clears it.
ALTER TABLE markets ADD COLUMN embedding_stale boolean NOT NULL DEFAULT true;

CREATE FUNCTION markets_stale_embedding() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.embedding_stale := true;
    RETURN NEW;
END
$$;

CREATE TRIGGER markets_stale_embedding
    BEFORE UPDATE OF name, description ON markets
    FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.description IS DISTINCT FROM NEW.description)
    EXECUTE FUNCTION markets_stale_embedding();

-- The indexer's queue: small, because it only holds the pending markets.
CREATE INDEX markets_embedding_stale_idx ON markets (updated_at, id) WHERE embedding_stale;
