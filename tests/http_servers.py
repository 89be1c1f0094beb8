"""Start a quiet threaded HTTP server on a free local port for test material (model server, proxy)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early (a refused download) is expected in these tests, not news


def serve_get(answer: Callable[[BaseHTTPRequestHandler], None],
              methods: tuple[str, ...] = ("GET",)) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 whose requests of `methods` (HTTP/1.1) are answered by `answer`, serving on a daemon
    thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_") and name[3:] in methods:
                return lambda: answer(self)
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Quiet(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
