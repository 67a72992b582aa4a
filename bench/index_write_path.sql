-- Profile of the indexer's write path (issue 17), against the database bench/sustained.sh leaves:
--   psql "${DATABASE_URL%/*}/markets_sustained" -v prefill=5000 -v batches=40 -f bench/index_write_path.sql
-- It works on copies (prof_src, prof_m) and drops them at the end; the server need not run.
-- The indexer's write path on a copy of `markets` with its indexes: per batch of :batch, the claim
-- (UPDATE ... SKIP LOCKED) and the store (one UPDATE ... FROM the batch), timed apart, for
-- :batches batches on top of :prefill embedded rows, under each HNSW variant.
\set ON_ERROR_STOP on
DROP TABLE IF EXISTS prof_src;
CREATE TABLE prof_src AS SELECT (row_number() OVER (ORDER BY created_at))::int AS n, id, embedding
  FROM markets WHERE embedding IS NOT NULL;
SELECT count(*) AS source_rows FROM prof_src;
CREATE OR REPLACE PROCEDURE prof_store(label text, hnsw text, prefill int, batches int, batch int)
LANGUAGE plpgsql AS $$
DECLARE
  t timestamptz; claim_ms float := 0; store_ms float := 0; ix record; claimed int;
BEGIN
  DROP TABLE IF EXISTS prof_m;
  CREATE TABLE prof_m (LIKE markets INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS);
  INSERT INTO prof_m (id, name, description, status, volume, creator_id, created_at, updated_at, version,
                      embedding_stale, embedding)
    SELECT m.id, m.name, m.description, m.status, m.volume, m.creator_id, m.created_at, m.updated_at,
           m.version, s.n > prefill, CASE WHEN s.n <= prefill THEN m.embedding END
    FROM markets m JOIN prof_src s USING (id);
  ALTER TABLE prof_m ADD PRIMARY KEY (id), ADD COLUMN IF NOT EXISTS index_claim uuid,
    ADD COLUMN IF NOT EXISTS index_claimed_until timestamptz;
  FOR ix IN SELECT indexdef FROM pg_indexes WHERE tablename = 'markets'
      AND indexname NOT IN ('markets_pkey', 'markets_embedding_idx') LOOP
    EXECUTE regexp_replace(regexp_replace(ix.indexdef, 'INDEX \S+ ON', 'INDEX ON'), 'public\.markets ', 'public.prof_m ');
  END LOOP;
  IF hnsw <> '' THEN EXECUTE hnsw; END IF;
  ANALYZE prof_m;
  COMMIT;
  FOR i IN 1 .. batches LOOP
    t := clock_timestamp();
    UPDATE prof_m SET index_claim = gen_random_uuid(), index_claimed_until = now() + interval '120 s'
      WHERE id IN (SELECT id FROM prof_m WHERE embedding_stale
                     AND (index_claimed_until IS NULL OR index_claimed_until <= now())
                   ORDER BY updated_at, id LIMIT batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS claimed = ROW_COUNT;
    COMMIT;
    claim_ms := claim_ms + extract(epoch FROM clock_timestamp() - t) * 1000;
    t := clock_timestamp();
    UPDATE prof_m SET embedding = s.embedding, embedding_stale = false, index_claim = NULL,
        index_claimed_until = NULL
      FROM prof_src s WHERE prof_m.id = s.id AND prof_m.index_claim IS NOT NULL;
    COMMIT;
    store_ms := store_ms + extract(epoch FROM clock_timestamp() - t) * 1000;
  END LOOP;
  RAISE NOTICE '% | batch % | claim % ms/batch | store % ms/batch | % rows/s (claim+store)', label, batch,
    round((claim_ms / batches)::numeric, 1), round((store_ms / batches)::numeric, 1),
    round((batches * batch / ((claim_ms + store_ms) / 1000))::numeric);
END $$;
SET maintenance_work_mem = '512MB';
CALL prof_store('no HNSW index', '', :prefill, :batches, 64);
CALL prof_store('HNSW vector m16 ef64 (landed)', 'CREATE INDEX ON prof_m USING hnsw (embedding vector_cosine_ops)', :prefill, :batches, 64);
CALL prof_store('HNSW vector ef_construction 32', 'CREATE INDEX ON prof_m USING hnsw (embedding vector_cosine_ops) WITH (ef_construction = 32)', :prefill, :batches, 64);
CALL prof_store('HNSW halfvec ef64', 'CREATE INDEX ON prof_m USING hnsw ((embedding::halfvec(1536)) halfvec_cosine_ops)', :prefill, :batches, 64);
CALL prof_store('HNSW halfvec ef32', 'CREATE INDEX ON prof_m USING hnsw ((embedding::halfvec(1536)) halfvec_cosine_ops) WITH (ef_construction = 32)', :prefill, :batches, 64);
CALL prof_store('HNSW vector m16 ef64, batch 256', 'CREATE INDEX ON prof_m USING hnsw (embedding vector_cosine_ops)', :prefill, :batches / 4, 256);
CALL prof_store('no HNSW, no other index but pkey', 'DO $x$ DECLARE r record; BEGIN FOR r IN SELECT indexname FROM pg_indexes WHERE tablename = ''prof_m'' AND indexname NOT LIKE ''%pkey'' LOOP EXECUTE ''DROP INDEX '' || r.indexname; END LOOP; END $x$', :prefill, :batches, 64);
DROP TABLE prof_m, prof_src;
DROP PROCEDURE prof_store;
