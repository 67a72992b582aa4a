#!/usr/bin/env python3
"""One sustained-write run for bench/sustained.sh, and the table of several.

    python3 bench/sustained.py run --name NAME --base URL --metrics URL --db URL_OR_SQLITE_PATH \
        --log SERVER_LOG --pid SERVER_PID --secs 60 --drain-limit 300 [--mock URL] [--connections 32]
    python3 bench/sustained.py table RESULTS.jsonl

`run` creates markets through the API with wrk (bench/create.lua, BENCH_TOKEN from the
environment) for --secs seconds, samples the index backlog (markets whose embedding is stale)
and the job queue every second, then waits, idle, until no market is stale and no job is left
(at most --drain-limit seconds after the load). It prints one JSON line:

- creates/s: markets committed / load seconds (and wrk's non-2xx count);
- the largest backlog sampled, of embeddings and of notifications;
- drain: from the last market's created_at to the first sample that saw no stale market and no
  job (sampled every 0.2 s once the load is over), and apart, to the first that saw no stale
  market (index) and no notification job (notify);
- notification wait: each "market-created notice" line of the server's JSON log (the log
  notifier), its timestamp minus its market's created_at; p50, p99, max, and duplicates;
- embeddings/s: during the load (markets embedded by its end / load seconds) and overall
  (markets / first create to the index drained);
- embedding writes per market: rows written by the indexer (a counting trigger on PostgreSQL,
  vector_index.generation on SQLite), and embeddings_computed_total where the binary has it;
- with --mock, the embeddings mock's requests and texts per market;
- the machine's CPU use (both cores = 100%) during the load and during the drain, and the CPU
  seconds of the server, PostgreSQL, Redis and wrk in each (in the JSON line only).
"""

import argparse
import json
import math
import os
import re
import sqlite3
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timezone


class Postgres:
    def __init__(self, url):
        self.url = url

    def rows(self, sql):
        out = subprocess.run(
            ["psql", "-Atq", "-F", "\t", self.url, "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def sample(self):
        [[stale, notify, jobs]] = self.rows(
            "SELECT (SELECT count(*) FROM markets WHERE embedding_stale), "
            "(SELECT count(*) FROM jobs WHERE kind = 'notify_market_created' AND state <> 'dead'), "
            "(SELECT count(*) FROM jobs WHERE state <> 'dead')"
        )
        return int(stale), int(notify), int(jobs)

    def created(self):
        """Each market's id (canonical uuid text) and created_at (seconds since the epoch)."""
        return {
            id: float(at)
            for id, at in self.rows("SELECT id, extract(epoch FROM created_at) FROM markets")
        }

    def embedding_writes(self):
        return int(self.rows("SELECT count(*) FROM bench_embedding_writes")[0][0])

    def dead_jobs(self):
        return int(self.rows("SELECT count(*) FROM jobs WHERE state = 'dead'")[0][0])


class Sqlite:
    def __init__(self, path):
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 5000")
        self.lock = threading.Lock()

    def rows(self, sql):
        with self.lock:
            return self.db.execute(sql).fetchall()

    def sample(self):
        [(stale, notify, jobs)] = self.rows(
            "SELECT (SELECT count(*) FROM markets WHERE embedding_stale = 1), "
            "(SELECT count(*) FROM jobs WHERE kind = 'notify_market_created' AND state <> 'dead'), "
            "(SELECT count(*) FROM jobs WHERE state <> 'dead')"
        )
        return stale, notify, jobs

    def created(self):
        out = {}
        for id, at in self.rows("SELECT id, created_at FROM markets"):
            h = id.hex()
            out[f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"] = at / 1e6
        return out

    def embedding_writes(self):
        return self.rows("SELECT generation FROM vector_index")[0][0]

    def dead_jobs(self):
        return self.rows("SELECT count(*) FROM jobs WHERE state = 'dead'")[0][0]


def cpu_busy():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


GROUPS = {"markets": "server", "postgres": "postgres", "redis-server": "redis", "wrk": "wrk",
          "python3": "bench"}


def cpu_by_process():
    """CPU seconds used so far by the processes of each group (by command name), the markets
    server and worker, PostgreSQL's backends, Redis, wrk, this script."""
    ticks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                raw = stat.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        # The server may run as a copy of the binary under another name (BENCH_BIN).
        group = "server" if comm.startswith("markets") else GROUPS.get(comm)
        if group:
            ticks[group] = ticks.get(group, 0) + int(fields[11]) + int(fields[12])
    hz = os.sysconf("SC_CLK_TCK")
    return {group: value / hz for group, value in ticks.items()}


def used(before, after):
    """CPU seconds each group used between two readings (processes that ended are missed)."""
    return {group: round(after[group] - before.get(group, 0), 1) for group in sorted(after)}


def share(before, after):
    busy = after[0] - before[0]
    total = after[1] - before[1]
    return round(100 * busy / total) if total else 0


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def metric(text, name):
    """The sum of a counter over its label sets, or None if the binary does not export it."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


NOTICE = re.compile(r"/markets/([0-9a-f-]{36})")


def notices(log):
    """(market id, timestamp, idempotency key) of each notice the log notifier wrote."""
    found = []
    with open(log, errors="replace") as lines:
        for line in lines:
            if "market-created notice" not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            fields = event.get("fields", event)
            match = NOTICE.search(str(fields.get("url", "")))
            if not match:
                continue
            at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            found.append((match.group(1), at.timestamp(), fields.get("idempotency_key")))
    return found


def run(args):
    db = Postgres(args.db) if args.db.startswith("postgres") else Sqlite(args.db)
    samples = []  # (phase, t, stale, notify, jobs)
    phase = ["load"]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            stale, notify, jobs = db.sample()
            samples.append((phase[0], time.time(), stale, notify, jobs))
            stop.wait(1.0 if phase[0] == "load" else 0.2)

    with open("/proc/loadavg") as loadavg:
        load_before = float(loadavg.read().split()[0])
    cpu0 = cpu_busy()
    procs0 = cpu_by_process()
    started = time.time()
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    wrk = subprocess.run(
        ["wrk", f"-t{min(2, args.connections)}", f"-c{args.connections}", f"-d{args.secs}s", "--latency",
         "-s", "bench/create.lua", args.base],
        check=True, capture_output=True, text=True,
    ).stdout
    load_end = time.time()
    cpu1 = cpu_busy()
    procs1 = cpu_by_process()
    at_load_end = db.sample()
    phase[0] = "drain"
    drained_at = indexed_at = notified_at = None
    while time.time() < load_end + args.drain_limit:
        latest = samples[-1] if samples else None
        if latest and latest[0] == "drain":
            if indexed_at is None and latest[2] == 0:
                indexed_at = latest[1]
            if notified_at is None and latest[3] == 0:
                notified_at = latest[1]
            if latest[2] == 0 and latest[4] == 0:
                drained_at = latest[1]
                break
        time.sleep(0.05)
    stop.set()
    thread.join()
    cpu2 = cpu_busy()
    procs2 = cpu_by_process()

    result = {"name": args.name}
    non2xx = re.search(r"non2xx=(\d+)", wrk)
    created = db.created()
    markets = len(created)
    first, last = min(created.values()), max(created.values())
    result["markets"] = markets
    result["creates_per_s"] = round(markets / args.secs, 1)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else None
    result["max_backlog"] = max([s[2] for s in samples] + [at_load_end[0]])
    result["max_notify_queued"] = max([s[3] for s in samples] + [at_load_end[1]])
    result["stale_at_load_end"] = at_load_end[0]
    result["notify_queued_at_load_end"] = at_load_end[1]

    def since_last(at):
        return round(at - last, 1) if at else None

    result["drain_s"] = since_last(drained_at)
    result["index_drain_s"] = since_last(indexed_at)
    result["notify_drain_s"] = since_last(notified_at)
    result["drain_limit_s"] = args.drain_limit
    embedded_by_load_end = markets - at_load_end[0]
    result["embeddings_per_s_load"] = round(embedded_by_load_end / (load_end - first), 1)
    if indexed_at:
        result["embeddings_per_s_overall"] = round(markets / (indexed_at - first), 1)
    else:
        embedded = markets - samples[-1][2]
        result["embeddings_per_s_overall"] = round(embedded / (samples[-1][1] - first), 1)

    waits, keys = [], {}
    for market, at, key in notices(args.log):
        if market in created:
            waits.append(at - created[market])
            keys[key] = keys.get(key, 0) + 1
    result["notices"] = len(waits)
    result["notice_duplicates"] = sum(n - 1 for n in keys.values())
    result["notify_p50_s"] = round(percentile(waits, 50), 3) if waits else None
    result["notify_p99_s"] = round(percentile(waits, 99), 3) if waits else None
    result["notify_max_s"] = round(max(waits), 3) if waits else None
    load_waits = [w for market, at, _ in notices(args.log)
                  if market in created and at <= load_end
                  for w in [at - created[market]]]
    result["notify_p99_during_load_s"] = (
        round(percentile(load_waits, 99), 3) if load_waits else None)

    writes = db.embedding_writes()
    result["embedding_writes_per_market"] = round(writes / markets, 3)
    metrics = urllib.request.urlopen(args.metrics, timeout=5).read().decode()
    computed = metric(metrics, "embeddings_computed_total")
    result["computed_per_market"] = round(computed / markets, 3) if computed is not None else None
    if args.mock:
        counts = json.load(urllib.request.urlopen(args.mock + "/count", timeout=5))
        result["mock_texts_per_market"] = round(counts["texts"] / markets, 3)
        result["mock_requests_per_market"] = round(counts["requests"] / markets, 4)
        result["mock_requests"] = counts["requests"]
    result["dead_jobs"] = db.dead_jobs()
    result["loadavg_before"] = load_before
    result["cpu_load_pct"] = share(cpu0, cpu1)
    result["cpu_drain_pct"] = share(cpu1, cpu2)
    result["load_s"] = round(load_end - started, 1)
    result["cpu_s_load"] = used(procs0, procs1)
    result["cpu_s_drain"] = used(procs1, procs2)
    print(json.dumps(result))


COLUMNS = [
    ("creates/s", "creates_per_s"),
    ("max backlog", "max_backlog"),
    ("stale at load end", "stale_at_load_end"),
    ("drain s (all jobs done)", "drain_s"),
    ("index drain s", "index_drain_s"),
    ("notify drain s", "notify_drain_s"),
    ("notify p50 s", "notify_p50_s"),
    ("notify p99 s", "notify_p99_s"),
    ("notify max s", "notify_max_s"),
    ("max notify queued", "max_notify_queued"),
    ("notify queued at load end", "notify_queued_at_load_end"),
    ("embeddings/s load", "embeddings_per_s_load"),
    ("embeddings/s overall", "embeddings_per_s_overall"),
    ("writes/market", "embedding_writes_per_market"),
    ("computed/market", "computed_per_market"),
    ("mock texts/market", "mock_texts_per_market"),
    ("mock requests/market", "mock_requests_per_market"),
    ("CPU load %", "cpu_load_pct"),
    ("CPU drain %", "cpu_drain_pct"),
]


def table(args):
    results = [json.loads(line) for line in open(args.results) if line.strip()]
    print("| figure | " + " | ".join(r["name"] for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for title, key in COLUMNS:
        cells = []
        for r in results:
            value = r.get(key)
            if key.endswith("drain_s") and value is None and "drain_limit_s" in r:
                value = f"> {r['drain_limit_s']}"
            cells.append("–" if value is None else str(value))
        print(f"| {title} | " + " | ".join(cells) + " |")
    print("| markets / notices / duplicates / dead jobs | " + " | ".join(
        f"{r['markets']} / {r['notices']} / {r['notice_duplicates']} / {r['dead_jobs']}"
        for r in results) + " |")


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run")
    one.add_argument("--name", required=True)
    one.add_argument("--base", required=True)
    one.add_argument("--metrics", required=True)
    one.add_argument("--db", required=True)
    one.add_argument("--log", required=True)
    one.add_argument("--secs", type=int, default=60)
    one.add_argument("--drain-limit", type=int, default=300)
    one.add_argument("--connections", type=int, default=32)
    one.add_argument("--mock")
    many = commands.add_parser("table")
    many.add_argument("results")
    args = parser.parse_args()
    (run if args.command == "run" else table)(args)


if __name__ == "__main__":
    main()
