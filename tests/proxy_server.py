"""A small forwarding HTTP proxy for tests: takes absolute-URI GETs (`GET http://host/path`), relays them with their
Range header to the origin, answers with the origin's status, length, range and body, and logs every URL relayed.

Test material only. A client that honours HTTP_PROXY sends it every plain-HTTP request; one that bypasses it
(NO_PROXY) leaves the log empty.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.http_servers import serve_get

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_RELAYED_HEADERS = ("Content-Length", "Content-Range", "Content-Type")


@dataclass
class ProxyServer:
    relayed: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ProxyServer:
        self._server = serve_get(self._relay)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        self.relayed.append(handler.path)
        headers = {"Range": handler.headers["Range"]} if handler.headers.get("Range") else {}
        try:
            with _DIRECT.open(urllib.request.Request(handler.path, headers=headers), timeout=30) as answer:
                status, body, sent = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as exc:
            status, body, sent = exc.code, exc.read(), exc.headers
        handler.send_response(status)
        for name in _RELAYED_HEADERS:
            if sent.get(name):
                handler.send_header(name, sent[name])
        handler.end_headers()
        handler.wfile.write(body)
