"""A small HTTP model repository for tests: serves a directory, honours single `Range` GETs, logs every request.

Test material only (not the product, not the stand-in). `Range: bytes=a-b` is answered 206 with those bytes; a
range whose last byte is before its first is invalid and ignored (RFC 9110: 200 with the whole file); a range
starting at or past the end is 416. `statuses` forces an answer (e.g. `{"/x.pt": 302}`). With `hold_bodies=N`,
the `.pt` answers send their status line and headers at once, then hold their bodies until N requests for that
file have arrived: a client that reads one body before opening the next connection never gets it. With `gate`,
`.pt` bodies wait until the test sets it. `bytes=a-` (to the end) is honoured too, and every 206 carries its
`Content-Range`. With `cut_after={path: n}`, the next answer for that path promises the whole body but sends only
its first n bytes and closes the connection (a download cut half way), once.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.http_servers import serve_get


@dataclass
class Logged:
    path: str
    range: str | None
    status: int


@dataclass
class RepositoryServer:
    root: Path
    statuses: dict[str, int] = field(default_factory=dict)
    hold_bodies: int = 0
    gate: threading.Event | None = None  # when set up, `.pt` bodies wait for it
    cut_after: dict[str, int] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition)
    _pt_requests: int = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RepositoryServer:
        self._server = serve_get(self._answer)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def ranges(self, path: str) -> list[str | None]:
        return [entry.range for entry in self.log if entry.path == path]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path, wanted = handler.path, handler.headers.get("Range")
        file = self.root / path.lstrip("/")
        forced = self.statuses.get(path)
        if forced is not None or not file.is_file():
            status = forced or 404
            self.log.append(Logged(path, wanted, status))
            handler.send_response(status)
            if status in (301, 302, 303):
                handler.send_header("Location", self.url + "/elsewhere")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = file.read_bytes()
        status, body, first = _ranged(data, wanted)
        self.log.append(Logged(path, wanted, status))
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {first}-{first + len(body) - 1}/{len(data)}")
        handler.end_headers()
        cut = self.cut_after.pop(path, None)
        if cut is not None:
            handler.wfile.write(body[:cut])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler.wfile.flush()
        if path.endswith(".pt") and self.hold_bodies:
            self._wait_for_all()
        if path.endswith(".pt") and self.gate is not None:
            self.gate.wait(60)
        handler.wfile.write(body)

    def _wait_for_all(self) -> None:
        with self._arrived:
            self._pt_requests += 1
            self._arrived.notify_all()
            self._arrived.wait_for(lambda: self._pt_requests >= self.hold_bodies, timeout=30)


def _ranged(data: bytes, wanted: str | None) -> tuple[int, bytes, int]:
    """(status, body, offset of the body's first byte)."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted or "")
    if match is None:
        return 200, data, 0
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else len(data) - 1
    if last < first and match.group(2):
        return 200, data, 0  # an invalid range is ignored
    if first >= len(data):
        return 416, b"", 0
    return 206, data[first:last + 1], first
