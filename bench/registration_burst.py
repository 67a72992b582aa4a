"""A registration flood against a running server: N clients registering at once, each again
as soon as it is answered, for SECS seconds; one client logging in again and again meanwhile;
and the server's memory before, at its peak and after the flood.

Usage: registration_burst.py BASE_URL SERVER_PID LOGIN_EMAIL LOGIN_PASSWORD [N] [SECS] [SETTLE_SECS]

Prints one markdown table row per figure (label | value). The peak is the server's VmHWM,
reset (clear_refs) just before the flood; "after" is its VmRSS SETTLE_SECS after the last
registration was answered.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse
import uuid


def rss_mb(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def post(base, path, body):
    """POSTs JSON; returns (status, seconds taken)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    started = time.monotonic()
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except OSError:
        return 0, time.monotonic() - started
    finally:
        connection.close()


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else float("nan")


def main():
    base, pid, email, password = sys.argv[1:5]
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    duration = float(sys.argv[6]) if len(sys.argv) > 6 else 5.0
    settle = float(sys.argv[7]) if len(sys.argv) > 7 else 3.0
    run = uuid.uuid4().hex[:8]

    before = rss_mb(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak-RSS counter

    start = threading.Barrier(count + 1)
    statuses = [[] for _ in range(count)]
    deadline = []

    def register(i):
        start.wait()
        while not statuses[i] or time.monotonic() < deadline[0]:
            email = f"burst-{run}-{i}-{len(statuses[i])}@example.com"
            body = {"email": email, "password": "burst password", "display_name": "Burst"}
            statuses[i].append(post(base, "/api/v1/auth/register", body)[0])

    threads = [threading.Thread(target=register, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    logins = []
    done = threading.Event()

    def log_in():
        while not done.is_set():
            logins.append(post(base, "/api/v1/auth/login", {"email": email, "password": password}))

    login_thread = threading.Thread(target=log_in)
    burst_started = time.monotonic()
    deadline.append(burst_started + duration)
    start.wait()
    login_thread.start()
    for thread in threads:
        thread.join()
    burst_secs = time.monotonic() - burst_started
    done.set()
    login_thread.join()
    peak = rss_mb(pid, "VmHWM")
    time.sleep(settle)
    after = rss_mb(pid, "VmRSS")

    answered = {}
    for status in (status for client in statuses for status in client):
        answered[status] = answered.get(status, 0) + 1
    served = [secs for status, secs in logins if status == 200]
    refused = sum(1 for status, _ in logins if status != 200)
    rows = [
        ("registrations", f"{count} clients for {duration:.0f} s, over in {burst_secs:.1f} s"),
        ("registration statuses", ", ".join(f"{n} x {s}" for s, n in sorted(answered.items()))),
        ("logins during the flood", f"{len(served)} served, {refused} refused"),
        ("login p50 / p99 ms", f"{percentile(served, 0.5):.0f} / {percentile(served, 0.99):.0f}"),
        ("RSS before MB", f"{before:.1f}"),
        ("RSS peak MB", f"{peak:.1f}"),
        (f"RSS {settle:.0f} s after MB", f"{after:.1f}"),
    ]
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
