"""Opens /docs in headless Chromium with every host but the service unreachable, and checks that
Swagger UI rendered the document: every operation of /openapi.json is listed on the page.

Usage: docs_page.py CHROMIUM BASE_URL
"""

import json
import re
import subprocess
import sys
import tempfile
import urllib.request


def main(chromium, base):
    document = json.load(urllib.request.urlopen(f"{base}/openapi.json", timeout=30))
    operations = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    ]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                f"--user-data-dir={profile}",
                # Any request to another host fails: the page must need none.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000", "--dump-dom", f"{base}/docs",
            ],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    # Swagger UI renders each operation as a block with its method and path.
    listed = set()
    for block in re.findall(r'<div class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]+)"', dom, re.S):
        listed.add((block[0].upper(), block[1].replace("&ZeroWidthSpace;", "").replace("\u200b", "")))
    missing = [f"{method} {path}" for method, path in operations if (method, path) not in listed]
    if missing or not operations:
        print(f"/docs lists {len(listed)} of {len(operations)} operations; missing: {missing}")
        print(dom[:2000])
        return 1
    print(f"/docs lists all {len(operations)} operations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
