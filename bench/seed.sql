-- A realistic data set for the benchmark: 200 users and 10,000 markets spread over a year,
-- with several statuses, volumes up to a million and descriptions of a few hundred characters.
-- The users' password hashes are not usable; the benchmark logs in with an admin it creates.
BEGIN;
INSERT INTO users (id, email, display_name, password_hash, role, created_at)
SELECT gen_random_uuid(), 'bench' || n || '@example.com', 'Bench User ' || n,
       '$argon2id$v=19$m=19456,t=2,p=1$unusable$unusable', 'user',
       now() - (n || ' days')::interval
FROM generate_series(1, 200) AS n;

INSERT INTO markets (id, name, description, status, volume, creator_id, created_at, updated_at)
SELECT gen_random_uuid(),
       'Will ' || (ARRAY['Bitcoin', 'the Fed', 'Team Red', 'the heatwave', 'Candidate Blue',
                         'the launch', 'inflation', 'the merger'])[1 + n % 8]
           || ' ' || (ARRAY['rise', 'win', 'end', 'happen', 'pass'])[1 + n % 5]
           || ' by ' || to_char(now() + (n % 400 || ' days')::interval, 'YYYY-MM-DD') || '? #' || n,
       repeat('Resolves according to the official source named in the rules. ', 3 + n % 6),
       (ARRAY['open', 'open', 'open', 'open', 'open', 'open', 'open', 'closed', 'closed', 'resolved'])[1 + n % 10],
       round((random() * 1000000)::numeric, 2),
       (SELECT id FROM users ORDER BY email OFFSET (n % 200) LIMIT 1),
       now() - (n * 3 || ' minutes')::interval,
       now() - (n * 3 || ' minutes')::interval
FROM generate_series(1, 10000) AS n;
COMMIT;
-- As autovacuum would soon: statistics, and a visibility map for index-only scans.
VACUUM ANALYZE users;
VACUUM ANALYZE markets;
