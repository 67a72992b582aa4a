-- The benchmark's data set, grown in place: 200 users (once) and the markets numbered
-- :first to :last (psql variables), a few minutes apart, with several statuses, volumes up to a
-- million and descriptions of a few hundred characters. One INSERT ... SELECT over
-- generate_series: a million rows take about a minute, and the per-status counters
-- (market_counts) are kept by the statement's trigger in the same transaction, as for any write.
-- The users' password hashes are not usable; the benchmark logs in with an admin it creates.
--
-- Markets numbered above :search_max are stored as already indexed (`embedding_stale` false,
-- no embedding): search is only measured up to that size, and embedding a million markets with
-- the local embedder and HNSW inserts would take far longer than the benchmark itself. The
-- others are left pending for `markets reindex --resume`, so that no server's background
-- indexing sweep has anything to do while reads are measured.
BEGIN;
INSERT INTO users (id, email, display_name, password_hash, role, created_at)
SELECT gen_random_uuid(), 'bench' || n || '@example.com', 'Bench User ' || n,
       '$argon2id$v=19$m=19456,t=2,p=1$unusable$unusable', 'user',
       now() - (n || ' days')::interval
FROM generate_series(1, 200) AS n
ON CONFLICT DO NOTHING;

INSERT INTO markets (id, name, description, status, volume, creator_id, created_at, updated_at,
                     embedding_stale)
SELECT gen_random_uuid(),
       'Will ' || (ARRAY['Bitcoin', 'the Fed', 'Team Red', 'the heatwave', 'Candidate Blue',
                         'the launch', 'inflation', 'the merger'])[1 + n % 8]
           || ' ' || (ARRAY['rise', 'win', 'end', 'happen', 'pass'])[1 + n % 5]
           || ' by ' || to_char(now() + (n % 400 || ' days')::interval, 'YYYY-MM-DD') || '? #' || n,
       repeat('Resolves according to the official source named in the rules. ', 3 + n % 6),
       (ARRAY['open', 'open', 'open', 'open', 'open', 'open', 'open', 'closed', 'closed', 'resolved'])[1 + n % 10],
       round((random() * 1000000)::numeric, 2),
       creators.ids[1 + n % 200],
       now() - (n * 3 || ' minutes')::interval,
       now() - (n * 3 || ' minutes')::interval,
       n <= :search_max
FROM generate_series(:first, :last) AS n,
     (SELECT array_agg(id ORDER BY email) AS ids FROM users
      WHERE email ~ '^bench[0-9]+@example\.com$') AS creators;
COMMIT;
