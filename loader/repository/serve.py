"""`repository serve`: the repository files of verified package bundles over HTTP, as the cluster's downloader
needs them, and nothing else.

Exactly `GET`/`HEAD /<name>` for each repository file: 200 with the whole file, 206 for one range (`ranges`), 416
for a range past the end; every other target (`/`, anything with `..`, a query string, a name not served) is 404
with no listing, every other method 405, and nothing ever redirects. Each request has its own thread, so the
cluster's parallel range downloads are served at once. Every byte is re-checked as it is sent: a response streams
its file one bundle piece at a time, each re-read and checked against the signed manifest just before it goes
out. A piece that fails before the status line turns the answer into a 500; one that fails later cuts the response
(the connection is closed short of its Content-Length, so the client sees a short body) and is reported on stderr
naming the piece and the check. Bytes that failed are never sent.
"""
from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loader.errors import EsbundleError, UsageError
from loader.repository.files import RepositoryFile
from loader.repository.ranges import UNSATISFIABLE, Answer, answer

WILDCARDS = ("0.0.0.0", "::")


class RepositoryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that never reads does not hold up the stop

    def __init__(self, host: str, port: int, files: Mapping[str, RepositoryFile], log: Callable[[str], None]) -> None:
        self.files, self.log = dict(files), log
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks socket.getfqdn for a name nothing here uses: a reverse DNS lookup that can
        # hang for a long time on a machine with no name server, as air-gapped machines often are.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with Content-Length framing, as the cluster's client expects
    server_version = "esbundle"
    timeout = 300  # an idle keep-alive connection is closed in the end, and its thread ends
    server: RepositoryHTTPServer

    def version_string(self) -> str:
        return self.server_version  # not the Python version: nothing a client needs

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def __getattr__(self, name: str) -> Any:
        # http.server answers 501 to a method it finds no `do_<METHOD>` for; every method but GET and HEAD is one
        # this read-only repository does not allow: 405.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._short(405, "method not allowed", {"Allow": "GET, HEAD"}, close=True)  # its body is never read

    def _short(self, status: int, text: str, headers: Mapping[str, str] | None = None, close: bool = False) -> None:
        body = (text + "\n").encode()
        self.close_connection = self.close_connection or close
        self.send_response(status)
        for name, value in {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body)),
                            **({"Connection": "close"} if close else {}), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self, send_body: bool) -> None:
        # The exact target or nothing: no decoding, no normalising, no query, so only the served names are reachable.
        # (From the request line: http.server collapses a leading `//` in `self.path`.)
        target = self.requestline.split()[1]
        file = self.server.files.get(target[1:]) if target.startswith("/") else None
        if file is None:
            return self._short(404, "not found")
        wanted = answer(self.headers.get("Range"), file.size)
        if wanted.status == UNSATISFIABLE:
            return self._short(416, "range not satisfiable", {"Content-Range": str(wanted.content_range(file.size))})
        chunks = file.chunks(wanted.first, wanted.last) if send_body else iter(())
        try:
            first = next(chunks, b"")  # the first piece checked before the status line: failing now is a 500
        except EsbundleError as exc:
            self._refused(file, wanted, exc, "answered 500 instead, nothing of it sent")
            return self._short(500, "refused: a bundle file changed since it was verified", close=True)
        self._headers(file, wanted)
        self._stream(file, wanted, itertools.chain([first], chunks))

    def _headers(self, file: RepositoryFile, wanted: Answer) -> None:
        self.send_response(wanted.status)
        self.send_header("Content-Type", "application/json" if file.name.endswith(".json")
                         else "application/octet-stream")
        self.send_header("Content-Length", str(wanted.length))
        self.send_header("Accept-Ranges", "bytes")
        content_range = wanted.content_range(file.size)
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()

    def _stream(self, file: RepositoryFile, wanted: Answer, chunks: Iterator[bytes]) -> None:
        sent = 0
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                sent += len(chunk)
        except EsbundleError as exc:
            self._refused(file, wanted, exc, f"sent {sent} of {wanted.length} bytes, then closed the connection")
            self._cut()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away

    def _refused(self, file: RepositoryFile, wanted: Answer, exc: EsbundleError, outcome: str) -> None:
        where = f"{file.name} bytes {wanted.first}-{wanted.last}"
        for problem in exc.problems or (exc.message,):
            self.server.log(f"REFUSED {where} to {self.address_string()}: {problem}; {outcome}")

    def _cut(self) -> None:
        """End the response short of its Content-Length: the client sees the body end early, never a wrong byte."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        headers = getattr(self, "headers", None)
        wanted = headers.get("Range") if headers is not None else None
        self.server.log(f'{self.address_string()} "{self.requestline}" {getattr(code, "value", code)}'
                        + (f" {wanted}" if wanted else ""))

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(f"{self.address_string()} {format % args}")


def _bind(host: str, port: int, files: Mapping[str, RepositoryFile], log: Callable[[str], None]
          ) -> RepositoryHTTPServer:
    try:
        return RepositoryHTTPServer(host, port, files, log)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host} port {port} ({exc.strerror or exc})",
                         hint="choose another --host or --port (--port 0 takes a free one)") from None


def serve(files: Mapping[str, RepositoryFile], host: str, port: int, *, on_ready: Callable[[str], None],
          log: Callable[[str], None]) -> str:
    """Serve `files` until SIGINT or SIGTERM; `on_ready(url)` once listening, `log` one line per request and per
    refusal (from the request threads). Returns the name of the signal that stopped it."""
    if not hasattr(signal, "sigwait"):
        raise UsageError("repository serve needs a POSIX system (it waits for SIGINT or SIGTERM to stop)")
    stops = {signal.SIGINT, signal.SIGTERM}
    # Blocked before any thread starts, so every thread inherits the mask and the signals wait for sigwait below:
    # no handler ever runs in the middle of a request, and a stop cannot race the start.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        server = _bind(host, port, files, log)
        threading.Thread(target=server.serve_forever, name="repository-serve", daemon=True).start()
        try:
            on_ready(server.url)
            received = signal.sigwait(stops)
        finally:
            server.shutdown()
            server.server_close()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return signal.Signals(received).name
