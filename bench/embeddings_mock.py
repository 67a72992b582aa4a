#!/usr/bin/env python3
"""A counting stand-in for OpenAI's embeddings API, for bench/sustained.sh.

    python3 bench/embeddings_mock.py PORT [DIMENSIONS]

POST /v1/embeddings answers every text of `input` with a vector of DIMENSIONS (default 1536)
floats that differs per text (a fixed random body and a few components derived from the
text's hash), so the HNSW index sees distinct points, as it would with the real API: identical
vectors would make its inserts unrepresentative. GET /count answers
{"requests": N, "texts": M}: what the benchmark reports per market, the provider bill.
"""

import hashlib
import json
import random
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIMENSIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 1536
# The components a text's hash sets; the rest is one fixed random body, formatted once.
VARYING = 16
_body = random.Random(17)
BODY = ",".join(f"{_body.uniform(-0.03, 0.03):.6f}" for _ in range(DIMENSIONS - VARYING))

lock = threading.Lock()
counts = {"requests": 0, "texts": 0}


def vector(text):
    digest = hashlib.sha256(text.encode()).digest()
    varying = ",".join(f"{(byte - 128) / 256:.4f}" for byte in digest[:VARYING])
    return f"[{varying},{BODY}]"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/count":
            with lock:
                self.answer(200, json.dumps(counts))
        else:
            self.answer(404, '{"error":{"message":"not found"}}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/embeddings":
            self.answer(404, '{"error":{"message":"not found"}}')
            return
        texts = request.get("input", [])
        if isinstance(texts, str):
            texts = [texts]
        with lock:
            counts["requests"] += 1
            counts["texts"] += len(texts)
        items = ",".join(
            f'{{"object":"embedding","index":{i},"embedding":{vector(t)}}}'
            for i, t in enumerate(texts)
        )
        self.answer(
            200,
            f'{{"object":"list","model":"{request.get("model", "")}","data":[{items}],'
            f'"usage":{{"prompt_tokens":0,"total_tokens":0}}}}',
        )


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
