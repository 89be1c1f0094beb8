"""`esbundle repository serve` as a process (test material): started on a free port, its `serving` line read, and
plain HTTP/1.1 requests to it that tell a body cut short from a whole one."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.standin.fixture import DEADLINE, read_line

ESBUNDLE = Path(sys.executable).parent / "esbundle"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    short: bool  # the connection closed before Content-Length bytes arrived


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return str(parts.hostname), int(parts.port or 80)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self.address, timeout=DEADLINE)

    def request(self, path: str, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None) -> Reply:
        connection = self.connect()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            return read_reply(connection.getresponse())
        finally:
            connection.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(DEADLINE)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def read_reply(response: http.client.HTTPResponse) -> Reply:
    try:
        return Reply(response.status, response.headers, response.read(), short=False)
    except http.client.IncompleteRead as cut:
        return Reply(response.status, response.headers, cut.partial, short=True)


def start_serve(bundle: Path, key: Path, stderr_path: Path) -> Served:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESBUNDLE_", "ES_"))}
    argv = [str(ESBUNDLE), "repository", "serve", str(bundle), "--trusted-key", str(key), "--port", "0"]
    with open(stderr_path, "wb") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                   env={**env, "ESBUNDLE_NO_PROGRESS": "1"})
    assert process.stdout is not None
    line = read_line(process.stdout, 120)
    if not isinstance(line, bytes) or not line.startswith(b"serving http://"):
        process.kill()
        raise AssertionError(f"no serving line ({line!r}); stderr:\n{stderr_path.read_text()}")
    return Served(process, line.decode().split()[1], stderr_path)
