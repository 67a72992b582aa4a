-- The whole schema of the embedded store, equivalent to migrations/postgres/ as of its sixth
-- migration. Encodings (STRICT tables, so SQLite enforces the column types):
--   ids         16-byte BLOBs (the UUID's bytes): memcmp order is the domain's id order, so
--               "ties broken by id" sorts the same as in PostgreSQL;
--   timestamps  INTEGER microseconds since the Unix epoch, UTC: exact, sortable, the precision
--               of timestamptz;
--   volumes     INTEGER hundredths (cents): exact, never a float.

CREATE TABLE users (
    id            BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    -- NOCASE: uniqueness and lookups ignore ASCII case, as PostgreSQL's lower(email) index does
    -- (the domain stores emails lower-cased anyway).
    email         TEXT    NOT NULL COLLATE NOCASE CHECK (length(email) BETWEEN 3 AND 254),
    display_name  TEXT    NOT NULL CHECK (length(display_name) BETWEEN 1 AND 80),
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'moderator', 'admin')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE markets (
    -- An explicit rowid: FTS5's external content refers to rows by rowid, and VACUUM may
    -- renumber an implicit one.
    row_id          INTEGER NOT NULL PRIMARY KEY,
    id              BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    name            TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description     TEXT    NOT NULL CHECK (length(description) <= 5000),
    status          TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'resolved')),
    -- NUMERIC(15,2) in PostgreSQL: at most 9,999,999,999,999.99.
    volume_cents    INTEGER NOT NULL DEFAULT 0 CHECK (volume_cents BETWEEN 0 AND 999999999999999),
    creator_id      BLOB    NOT NULL REFERENCES users (id),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- Incremented by every update (under SQLite's write lock, so it only grows); caches refuse
    -- to write back a value older than one they hold.
    version         INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- Whether the embedding is missing or out of date; set by a trigger below in the statement
    -- that changes the name or description, cleared by the indexer.
    embedding_stale INTEGER NOT NULL DEFAULT 1 CHECK (embedding_stale IN (0, 1))
) STRICT;

-- One index per list ordering, with and without the status filter; each serves both directions
-- and keyset predicates on (key, id) row values. The id makes them covering for the offset
-- query's id-only scan.
CREATE INDEX markets_created_at_idx        ON markets (created_at DESC, id DESC);
CREATE INDEX markets_volume_idx            ON markets (volume_cents DESC, id DESC);
CREATE INDEX markets_status_created_at_idx ON markets (status, created_at DESC, id DESC);
CREATE INDEX markets_status_volume_idx     ON markets (status, volume_cents DESC, id DESC);
CREATE INDEX markets_creator_id_idx        ON markets (creator_id);
-- The indexer's queue: small, because it only holds the pending markets.
CREATE INDEX markets_embedding_stale_idx   ON markets (updated_at, id) WHERE embedding_stale = 1;

CREATE TRIGGER markets_stale_embedding
    AFTER UPDATE OF name, description ON markets
    FOR EACH ROW
    WHEN OLD.name IS NOT NEW.name OR OLD.description IS NOT NEW.description
BEGIN
    UPDATE markets SET embedding_stale = 1 WHERE row_id = NEW.row_id;
END;

-- The text-search fallback: an external-content FTS5 index over name and description (porter
-- stemming, like PostgreSQL's 'english' configuration), kept in step by triggers.
CREATE VIRTUAL TABLE markets_search USING fts5(
    name, description,
    content = 'markets', content_rowid = 'row_id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER markets_search_insert AFTER INSERT ON markets BEGIN
    INSERT INTO markets_search (rowid, name, description)
        VALUES (NEW.row_id, NEW.name, NEW.description);
END;

CREATE TRIGGER markets_search_delete AFTER DELETE ON markets BEGIN
    INSERT INTO markets_search (markets_search, rowid, name, description)
        VALUES ('delete', OLD.row_id, OLD.name, OLD.description);
END;

CREATE TRIGGER markets_search_update AFTER UPDATE OF name, description ON markets BEGIN
    INSERT INTO markets_search (markets_search, rowid, name, description)
        VALUES ('delete', OLD.row_id, OLD.name, OLD.description);
    INSERT INTO markets_search (rowid, name, description)
        VALUES (NEW.row_id, NEW.name, NEW.description);
END;

-- The vector index's settings, one row. `dimensions` is fixed here, like PostgreSQL's
-- vector(1536) column (OpenAI text-embedding-3-small's size, and the local embedder's):
-- changing it is a migration that also clears market_embeddings and marks every market stale.
-- `generation` grows with every change to market_embeddings (triggers below), from any
-- process, so an in-memory copy of the vectors knows cheaply when to reload.
CREATE TABLE vector_index (
    singleton  INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    dimensions INTEGER NOT NULL CHECK (dimensions > 0),
    generation INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO vector_index (singleton, dimensions) VALUES (1, 1536);

-- Embeddings apart from the markets, so list scans do not wade through 6 KiB blobs. The vector
-- is `dimensions` little-endian f32s, computed from market version `version`.
CREATE TABLE market_embeddings (
    market_row_id INTEGER NOT NULL PRIMARY KEY REFERENCES markets (row_id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    vector        BLOB    NOT NULL
) STRICT;

CREATE TRIGGER market_embeddings_insert AFTER INSERT ON market_embeddings BEGIN
    UPDATE vector_index SET generation = generation + 1;
END;

CREATE TRIGGER market_embeddings_update AFTER UPDATE ON market_embeddings BEGIN
    UPDATE vector_index SET generation = generation + 1;
END;

CREATE TRIGGER market_embeddings_delete AFTER DELETE ON market_embeddings BEGIN
    UPDATE vector_index SET generation = generation + 1;
END;

-- The outbox: work a change schedules, written in the same transaction as the change. Claims
-- are leases (`locked_until`); finished jobs are deleted; failed ones are retried, then dead.
CREATE TABLE jobs (
    id           BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    kind         TEXT    NOT NULL,
    market_id    BLOB    NOT NULL, -- no foreign key: a job may outlive its market
    state        TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL,
    locked_until INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX jobs_due_idx    ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased_idx ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_dead_idx   ON jobs (updated_at DESC) WHERE state = 'dead';

-- Tokens revoked by logout, until they would have expired.
CREATE TABLE revoked_tokens (
    token_id   TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);
