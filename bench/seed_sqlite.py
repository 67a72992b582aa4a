"""The benchmark's data set (bench/seed.sql's twin) for the embedded SQLite store, grown in
place: 200 users (once) and the markets numbered FIRST to LAST, in one transaction (the
market_counts triggers count each row as it goes). Markets above SEARCH_MAX are stored as
already indexed, as in bench/seed.sql.

Usage: seed_sqlite.py DATABASE_FILE FIRST LAST SEARCH_MAX IDS_FILE SAMPLE. Then writes up to
SAMPLE market ids, picked at random from the whole table, one per line, to IDS_FILE for the wrk
scripts."""
import random
import sqlite3
import sys
import time
import uuid

SUBJECTS = ["Bitcoin", "the Fed", "Team Red", "the heatwave", "Candidate Blue", "the launch",
            "inflation", "the merger"]
VERBS = ["rise", "win", "end", "happen", "pass"]
STATUSES = ["open"] * 7 + ["closed"] * 2 + ["resolved"]
DAY_US, MINUTE_US = 86_400_000_000, 60_000_000
HASH = "$argon2id$v=19$m=19456,t=2,p=1$unusable$unusable"


def markets(first, last, search_max, creators, now):
    for n in range(first, last + 1):
        due = time.strftime("%Y-%m-%d", time.gmtime(time.time() + (n % 400) * 86_400))
        at = now - n * 3 * MINUTE_US
        yield (uuid.uuid4().bytes,
               f"Will {SUBJECTS[n % 8]} {VERBS[n % 5]} by {due}? #{n}",
               "Resolves according to the official source named in the rules. " * (3 + n % 6),
               STATUSES[n % 10], random.randint(0, 100_000_000), creators[n % 200], at, at,
               int(n <= search_max))


def main(path, first, last, search_max, ids_path, sample):
    first, last, search_max, sample = int(first), int(last), int(search_max), int(sample)
    now = int(time.time() * 1_000_000)
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT OR IGNORE INTO users (id, email, display_name, password_hash, role,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, 'user', ?, ?)",
            [(uuid.uuid4().bytes, f"bench{n}@example.com", f"Bench User {n}", HASH,
              now - n * DAY_US, now - n * DAY_US) for n in range(1, 201)])
        creators = [row[0] for row in db.execute(
            "SELECT id FROM users WHERE email GLOB 'bench[0-9]*@example.com' ORDER BY email")]
        db.executemany(
            "INSERT INTO markets (id, name, description, status, volume_cents, creator_id,"
            " created_at, updated_at, embedding_stale) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            markets(first, last, search_max, creators, now))
    db.execute("ANALYZE")
    ids = db.execute("SELECT id FROM markets ORDER BY random() LIMIT ?", (sample,))
    with open(ids_path, "w") as out:
        out.writelines(f"{uuid.UUID(bytes=row[0])}\n" for row in ids)


if __name__ == "__main__":
    main(*sys.argv[1:7])
