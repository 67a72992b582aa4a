-- Exact list totals without a scan (migrations/postgres' market_counts, without shards: SQLite
-- runs one writer at a time anyway): how many markets have each status, kept by triggers in the
-- transaction of every insert, delete and status change, whoever writes.
CREATE TABLE market_counts (
    status TEXT    NOT NULL PRIMARY KEY CHECK (status IN ('open', 'closed', 'resolved')),
    count  INTEGER NOT NULL CHECK (count >= 0)
) STRICT, WITHOUT ROWID;

-- The migration holds the write lock, so no market is written between this backfill and the
-- triggers.
INSERT INTO market_counts (status, count)
SELECT statuses.status, (SELECT count(*) FROM markets WHERE markets.status = statuses.status)
FROM (SELECT 'open' AS status UNION ALL SELECT 'closed' UNION ALL SELECT 'resolved') AS statuses;

CREATE TRIGGER markets_count_insert AFTER INSERT ON markets BEGIN
    UPDATE market_counts SET count = count + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER markets_count_delete AFTER DELETE ON markets BEGIN
    UPDATE market_counts SET count = count - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER markets_count_status_change
    AFTER UPDATE OF status ON markets
    FOR EACH ROW
    WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE market_counts SET count = count - 1 WHERE status = OLD.status;
    UPDATE market_counts SET count = count + 1 WHERE status = NEW.status;
END;
