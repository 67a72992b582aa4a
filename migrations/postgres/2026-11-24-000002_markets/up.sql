-- Markets. Embeddings use pgvector with a fixed dimension of 1536 (OpenAI text-embedding-3-small's
-- native size; the local embedder produces the same). Changing it is a migration.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE markets (
    id          uuid          PRIMARY KEY,
    name        text          NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description text          NOT NULL CHECK (char_length(description) <= 5000),
    status      text          NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'resolved')),
    volume      numeric(15,2) NOT NULL DEFAULT 0 CHECK (volume >= 0),
    creator_id  uuid          NOT NULL REFERENCES users (id),
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    embedding   vector(1536),
    -- The text-search fallback: name weighs more than description.
    search_document tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A') ||
        setweight(to_tsvector('english', description), 'B')
    ) STORED
);

-- One index per list ordering, with and without the status filter. Each serves both directions
-- (scanned backwards for ascending) and keyset predicates on (key, id) row values.
CREATE INDEX markets_created_at_idx        ON markets (created_at DESC, id DESC);
CREATE INDEX markets_volume_idx            ON markets (volume DESC, id DESC);
CREATE INDEX markets_status_created_at_idx ON markets (status, created_at DESC, id DESC);
CREATE INDEX markets_status_volume_idx     ON markets (status, volume DESC, id DESC);
-- Foreign keys are not indexed by PostgreSQL itself; deleting or re-parenting users needs this.
CREATE INDEX markets_creator_id_idx        ON markets (creator_id);
CREATE INDEX markets_search_document_idx   ON markets USING gin (search_document);
CREATE INDEX markets_embedding_idx         ON markets USING hnsw (embedding vector_cosine_ops);
