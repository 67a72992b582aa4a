"""The benchmark's data set (bench/seed.sql's twin) for the embedded SQLite store: 200 users and
10,000 markets spread over a year. Usage: seed_sqlite.py DATABASE_FILE IDS_FILE. Writes the
market ids, one per line, to IDS_FILE for the wrk scripts."""
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


def main(path, ids_path):
    now = int(time.time() * 1_000_000)
    db = sqlite3.connect(path)
    users = [uuid.uuid4().bytes for _ in range(200)]
    db.executemany(
        "INSERT INTO users (id, email, display_name, password_hash, role, created_at, updated_at)"
        " VALUES (?, ?, ?, '$argon2id$v=19$m=19456,t=2,p=1$unusable$unusable', 'user', ?, ?)",
        [(u, f"bench{n}@example.com", f"Bench User {n}", now - n * DAY_US, now - n * DAY_US)
         for n, u in enumerate(users, 1)])
    markets = []
    for n in range(1, 10_001):
        due = time.strftime("%Y-%m-%d", time.gmtime(time.time() + (n % 400) * 86_400))
        at = now - n * 3 * MINUTE_US
        markets.append((
            uuid.uuid4().bytes,
            f"Will {SUBJECTS[n % 8]} {VERBS[n % 5]} by {due}? #{n}",
            "Resolves according to the official source named in the rules. " * (3 + n % 6),
            STATUSES[n % 10], random.randint(0, 100_000_000), users[n % 200], at, at))
    db.executemany(
        "INSERT INTO markets (id, name, description, status, volume_cents, creator_id, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", markets)
    db.commit()
    db.execute("ANALYZE")
    with open(ids_path, "w") as ids:
        ids.writelines(f"{uuid.UUID(bytes=m[0])}\n" for m in markets)


if __name__ == "__main__":
    main(*sys.argv[1:3])
