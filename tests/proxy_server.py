"""A small forwarding HTTP proxy for tests: takes absolute-URI requests of any method (`PUT http://host/path`),
relays them with their headers and body to the origin, answers with the origin's status, headers and body, and logs
every request relayed (method and URL). With `refuse=True` it answers every request 502 without relaying it.

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
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


@dataclass
class ProxyServer:
    relayed: list[str] = field(default_factory=list)  # URLs, in order
    methods: list[str] = field(default_factory=list)  # the method of each
    proxy_authorization: list[str | None] = field(default_factory=list)
    refuse: bool = False
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ProxyServer:
        self._server = serve_get(self._relay, METHODS)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        self.relayed.append(handler.path)
        self.methods.append(handler.command)
        self.proxy_authorization.append(handler.headers.get("Proxy-Authorization"))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if self.refuse:
            self._answer(handler, 502, b"", {})
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        request = urllib.request.Request(handler.path, data=body, headers=headers, method=handler.command)
        try:
            with _DIRECT.open(request, timeout=60) as answer:
                status, data, sent = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as exc:
            status, data, sent = exc.code, exc.read(), exc.headers
        length = sent.get("Content-Length") if handler.command == "HEAD" else None  # a HEAD's length is the GET's
        self._answer(handler, status, data, {k: v for k, v in sent.items() if k.lower() not in _HOP_BY_HOP}, length)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str],
                length: str | None = None) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", length or str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
