-- The change feed of the market cache (see markets_domain::cache::fences): every committed
-- change of a market's version, and every deletion, is kept here for a while and announced on
-- the `market_changes` channel in the same transaction, whatever wrote it. Each instance
-- listens, and reads this table when it (re)connects to learn what it missed, so that no cache
-- can serve a market older than what the database committed.
CREATE TABLE market_changes (
    market_id uuid PRIMARY KEY,
    version bigint NOT NULL,
    deleted boolean NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- Reconnecting instances read the recent changes; purges drop the old ones.
CREATE INDEX market_changes_changed_at_idx ON market_changes (changed_at);

CREATE FUNCTION markets_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone boolean := TG_OP = 'DELETE';
    changed markets%ROWTYPE;
BEGIN
    IF gone THEN changed := OLD; ELSE changed := NEW; END IF;
    INSERT INTO market_changes (market_id, version, deleted)
        VALUES (changed.id, changed.version, gone)
        ON CONFLICT (market_id) DO UPDATE
        SET version = GREATEST(market_changes.version, excluded.version),
            deleted = market_changes.deleted OR excluded.deleted,
            changed_at = now();
    PERFORM pg_notify('market_changes',
        changed.id::text || ' ' || CASE WHEN gone THEN 'deleted' ELSE changed.version::text END);
    RETURN NULL;
END
$$;

CREATE TRIGGER markets_changed_version
    AFTER UPDATE OF version ON markets
    FOR EACH ROW
    WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION markets_record_change();

CREATE TRIGGER markets_deleted
    AFTER DELETE ON markets
    FOR EACH ROW
    EXECUTE FUNCTION markets_record_change();
