-- Exact list totals without a scan: how many markets have each status, kept by triggers in the
-- transaction of every insert, delete and status change, whatever writes it (the service, the
-- benchmark's bulk seeding, an operator in psql). `meta.total` sums these rows instead of
-- counting the markets, so it costs the same at any table size.
--
-- A status's count is spread over 16 rows (shards). A write adds to the shard of its connection
-- (backend pid mod 16): a pool's backends have distinct, mostly consecutive pids, so concurrent
-- creates on different connections do not queue behind one row lock until they commit. A total
-- is the sum of its status's shards. One shard may go negative (a market created through one
-- connection and deleted through another): only the sums mean anything.
CREATE TABLE market_counts (
    status text NOT NULL CHECK (status IN ('open', 'closed', 'resolved')),
    shard smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    count bigint NOT NULL,
    PRIMARY KEY (status, shard)
);

-- No write may land between the backfill and the triggers: this lock waits for the writers in
-- flight and holds off new ones until the migration commits (reads go on).
LOCK TABLE markets IN SHARE ROW EXCLUSIVE MODE;

-- Every shard exists from the start; shard 0 takes the markets already stored.
INSERT INTO market_counts (status, shard, count)
SELECT statuses.status, shard,
       CASE WHEN shard = 0
            THEN (SELECT count(*) FROM markets WHERE markets.status = statuses.status)
            ELSE 0 END
FROM unnest(ARRAY['open', 'closed', 'resolved']) AS statuses (status),
     generate_series(0, 15) AS shard;

-- Adds deltas[i] to statuses[i] on this connection's shard. The rows are written in status
-- order, so two transactions that meet on a shard lock its rows in the same order and cannot
-- deadlock on them.
CREATE FUNCTION market_counts_add(statuses text[], deltas bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO market_counts AS counts (status, shard, count)
    SELECT status, pg_backend_pid() % 16, delta
    FROM unnest(statuses, deltas) AS changes (status, delta)
    WHERE delta <> 0
    ORDER BY status
    ON CONFLICT (status, shard) DO UPDATE SET count = counts.count + excluded.count
$$;

-- Inserts and deletes are counted once per statement, over its transition table: a bulk insert
-- of a million rows is one aggregate, not a million counter updates.
CREATE FUNCTION markets_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    statuses text[];
    deltas bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(status), array_agg(n) INTO statuses, deltas
        FROM (SELECT status, count(*) AS n FROM inserted GROUP BY status) AS added;
    ELSE
        SELECT array_agg(status), array_agg(-n) INTO statuses, deltas
        FROM (SELECT status, count(*) AS n FROM deleted GROUP BY status) AS removed;
    END IF;
    PERFORM market_counts_add(statuses, deltas);
    RETURN NULL;
END
$$;

CREATE TRIGGER markets_count_inserts
    AFTER INSERT ON markets
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION markets_count_rows();

CREATE TRIGGER markets_count_deletes
    AFTER DELETE ON markets
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT
    EXECUTE FUNCTION markets_count_rows();

-- A status change moves one market between two counts. Per row and only when the status
-- changed (transition tables cannot be limited to a column), so the many updates that leave the
-- status alone (versions, embeddings) cost nothing here.
CREATE FUNCTION markets_count_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM market_counts_add(ARRAY[OLD.status, NEW.status], ARRAY[-1, 1]::bigint[]);
    RETURN NULL;
END
$$;

CREATE TRIGGER markets_count_status_changes
    AFTER UPDATE OF status ON markets
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION markets_count_status_change();

-- TRUNCATE fires no row or delete trigger; it empties every count.
CREATE FUNCTION markets_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE market_counts SET count = 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER markets_count_truncates
    AFTER TRUNCATE ON markets
    FOR EACH STATEMENT
    EXECUTE FUNCTION markets_count_truncate();
