"""The stand-in's own ceiling: a minimal client sending pre-encoded definition parts as fast as it can.

Request bodies are built before the clock starts (base64 and JSON done), then `connections` threads send them over
keep-alive connections with http.client. No verification, no retries, nothing but the server's cost: how close a
loader gets to this figure says how much of its time is its own.
"""
from __future__ import annotations

import base64
import http.client
import json
import math
import os
import threading
import time
from urllib.parse import urlsplit


def ceiling(url: str, model_id: str, total: int, part_size: int = 1 << 20, connections: int = 4) -> float:
    """Upload `total` random bytes as a new model; return the wall seconds of the part uploads alone."""
    host = urlsplit(url)
    parts = math.ceil(total / part_size)
    raw = os.urandom(part_size)  # one random part reused: the server cost does not depend on the content
    bodies = []
    for index in range(parts):
        size = min(part_size, total - index * part_size)
        bodies.append(json.dumps({"definition": base64.b64encode(raw[:size]).decode(), "total_parts": parts,
                                  "total_definition_length": total}).encode())

    def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> None:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status >= 300:
            raise SystemExit(f"ceiling client: {method} {path} answered {response.status}")

    setup = http.client.HTTPConnection(host.hostname, host.port)
    config = {"model_type": "pytorch", "input": {"field_names": ["text_field"]},
              "inference_config": {"text_embedding": {"tokenization": {"bert": {}}}}}
    request(setup, "PUT", f"/_ml/trained_models/{model_id}", json.dumps(config).encode())
    queue = list(range(parts - 1))
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port)
        while True:
            with lock:
                if not queue:
                    break
                index = queue.pop()
            request(conn, "PUT", f"/_ml/trained_models/{model_id}/definition/{index}", bodies[index])
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    request(setup, "PUT", f"/_ml/trained_models/{model_id}/definition/{parts - 1}", bodies[-1])
    elapsed = time.perf_counter() - start
    request(setup, "DELETE", f"/_ml/trained_models/{model_id}?force=true")
    setup.close()
    return elapsed
