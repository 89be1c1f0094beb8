"""pytest fixtures that run the Elasticsearch stand-in as a real subprocess.

Registered for the whole suite by `pytest_plugins` in tests/conftest.py. Use:

    def test_something(standin):
        server = standin(es_version="9.4.0", user="elastic:changeme", tls=True)
        client = server.client()            # or es_client(server, ...)
        server.kill(); server.restart()     # same port, same data directory

`user` is one `NAME:PASSWORD[:PRIVILEGE,...]` or a list of them (each a `--user`); the fixture's own
requests (`http`, `client`) authenticate as the first, so list a superuser (`elastic:pw`) first.

Every process a test starts is killed at teardown. `StandIn.http(...)` sends raw requests (for
headers the official client would not send); it returns a `RawResponse`.

Races are driven by events, never by sleeps: with a `pause-at-part=N` or `pause-start=ID` fault plan,
`server.wait_for_pause(...)` returns once the stand-in holds the request, the test acts, then
`server.release(...)`. `wait_until(condition, what)` polls anything else with a deadline, and
`read_line(stream, timeout)` reads a line without ever hanging the run. Every wait here has a deadline.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # generous: a deadline only turns a hang into a failure, it never paces a test


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE, interval: float = 0.02) -> Any:
    """Poll `condition` until it returns something truthy (returned); AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def read_line(stream: Any, timeout: float = DEADLINE) -> bytes | str | None:
    """One `stream.readline()` that gives up after `timeout` seconds (None), e.g. a child's stdout pipe.

    The read runs on a daemon thread: if it never returns, the caller kills the child, which ends it.
    """
    line: list[bytes | str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else None


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StandIn:
    """One stand-in process: its URL, data directory, CA certificate and lifecycle."""

    data_dir: Path
    options: dict[str, Any]
    log_path: Path
    port: int = 0
    url: str = ""
    ca_cert: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # --- lifecycle ----------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tests.standin", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        for user in self.users:
            argv += ["--user", user]
        flags = {"es_version": "--es-version", "license": "--license", "api_key": "--api-key",
                 "max_content_length": "--max-content-length", "fail": "--fail",
                 "model_repository": "--model-repository", "config_dir": "--config-dir", "ml_platform": "--ml-platform"}
        for name, flag in flags.items():
            if self.options.get(name) is not None:
                argv += [flag, str(self.options[name])]
        if self.options.get("tls_dir") is not None:
            argv += ["--tls-dir", str(self.options["tls_dir"])]
        return argv

    def launch(self, ready_timeout: float = 60.0) -> StandIn:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self._argv(), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
                                            stdin=subprocess.DEVNULL)
        assert self.process.stdout is not None
        line = read_line(self.process.stdout, ready_timeout)
        text = line.decode().strip() if isinstance(line, bytes) else ""
        if not text.startswith("ready "):
            self.kill()
            raise RuntimeError(f"stand-in did not start ({text!r}); log:\n{self.log()}")
        self.url = text.split(" ", 1)[1]
        self.port = int(self.url.rsplit(":", 1)[1])
        tls_dir = self.options.get("tls_dir")
        self.ca_cert = Path(tls_dir) / "ca.crt" if tls_dir else None
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the clean stop. Returns the exit status."""
        assert self.process is not None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the crash."""
        if self.process is not None and self.running:
            self.process.kill()
        if self.process is not None:
            self.process.wait(15)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for a process that exits by itself (fault plans `exit-after-parts`, `crash-after-parts`)."""
        assert self.process is not None
        return self.process.wait(timeout)

    def restart(self, **changes: Any) -> StandIn:
        """Stop (kill if needed) and start again on the same port and data directory.

        `changes` replace start options (e.g. `fail=None` to clear a fault plan).
        """
        if self.running:
            self.stop()
        self.options.update(changes)
        return self.launch()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    # --- pauses (fault plans `pause-at-part=N`, `pause-start=MODEL_ID`) ---------------------------

    def pauses(self) -> list[dict[str, Any]]:
        """The requests the stand-in holds now: `{"hold", "point", "model_id", "part" | "deployment_id"}`."""
        response = self.http("GET", "/_standin/pauses")
        assert response.status == 200, response.body[:300]
        return list(response.json()["held"])

    def wait_for_pause(self, point: str | None = None, *, model_id: str | None = None, part: int | None = None,
                       count: int = 1, timeout: float = DEADLINE) -> list[dict[str, Any]]:
        """Wait until at least `count` matching requests are held; returns them. Fails at the deadline, or at
        once if the stand-in has exited."""

        def held() -> list[dict[str, Any]]:
            if not self.running:
                raise AssertionError(f"the stand-in exited ({self.process.returncode if self.process else None}) "
                                     f"before the pause; log:\n{self.log()[-3000:]}")
            matching = [h for h in self.pauses() if (point is None or h["point"] == point)
                        and (model_id is None or h["model_id"] == model_id) and (part is None or h.get("part") == part)]
            return matching if len(matching) >= count else []

        what = f"{count} held request(s) (point={point}, model_id={model_id}, part={part})"
        return list(wait_until(held, what, timeout))

    def release(self, point: str | None = None, *, model_id: str | None = None,
                part: int | None = None) -> list[dict[str, Any]]:
        """Let the matching held requests go on (every one without a filter); returns what was released."""
        filters = {"point": point, "model_id": model_id, "part": part}
        query = urlencode({name: value for name, value in filters.items() if value is not None})
        response = self.http("POST", "/_standin/release" + (f"?{query}" if query else ""))
        assert response.status == 200, response.body[:300]
        return list(response.json()["released"])

    # --- clients ------------------------------------------------------------------------------

    @property
    def users(self) -> list[str]:
        given = self.options.get("user")
        return [] if given is None else [given] if isinstance(given, str) else list(given)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The first user's name and password (what the fixture's own requests send)."""
        if not self.users:
            return None
        from .authz import split_user

        name, password, _ = split_user(self.users[0])
        return name, password

    @property
    def major(self) -> int:
        return int(str(self.options.get("es_version") or "9").split(".")[0])

    def client(self, **kwargs: Any) -> Any:
        return es_client(self, **kwargs)

    def auth_header(self) -> dict[str, str]:
        if self.credentials:
            return {"Authorization": "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()}
        if self.options.get("api_key"):
            from .security import encoded_api_key

            return {"Authorization": "ApiKey " + encoded_api_key(str(self.options["api_key"]))}
        return {}

    def http(self, method: str, path: str, body: bytes | dict[str, Any] | list[Any] | None = None,
             headers: dict[str, str] | None = None, auth: bool = True, timeout: float = 60.0) -> RawResponse:
        """One raw request on a fresh connection; dict bodies are sent as JSON."""
        scheme, _, host_port = self.url.partition("://")
        host, port = host_port.rsplit(":", 1)
        if scheme == "https":
            context = ssl.create_default_context(cafile=str(self.ca_cert))
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                                                                  context=context)
        else:
            connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        all_headers = {**(self.auth_header() if auth else {}), **(headers or {})}
        payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        if payload is not None and not any(k.lower() == "content-type" for k in all_headers):
            all_headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            return RawResponse(response.status, response.headers, response.read())
        finally:
            connection.close()


def es_client(server: StandIn, *, auth: bool = True, compat: int | None = None, **kwargs: Any) -> Any:
    """An official `elasticsearch.Elasticsearch` client for `server`.

    Uses the server's CA and configured credentials (basic if `user` was given, else the API key);
    `auth=False` sends none. Against an 8.x stand-in the 9.x client's `compatible-with=9` would be
    refused, so the headers ask for `compat` (default: the server's major version).
    """
    from elasticsearch import Elasticsearch

    options: dict[str, Any] = {"request_timeout": 60, "max_retries": 0, "retry_on_timeout": False}
    if server.ca_cert is not None:
        options["ca_certs"] = str(server.ca_cert)
    if auth and server.credentials:
        options["basic_auth"] = server.credentials
    elif auth and server.options.get("api_key"):
        from .security import encoded_api_key

        options["api_key"] = encoded_api_key(str(server.options["api_key"]))
    options.update(kwargs)
    client = Elasticsearch(server.url, **options)
    version = compat if compat is not None else server.major
    if version != 9:
        _ask_for_compat(client, version)
    return client


def _ask_for_compat(client: Any, version: int) -> None:
    """Rewrite the client's `compatible-with=9` on every request (clones share the transport).

    The 9.x client sets Accept per API call, after any constructor headers, so only the transport
    sees the final header; a loader talking to 8.x clusters has to solve the same problem.
    """
    transport = client.transport
    original = transport.perform_request

    def perform_request(method: str, target: str, *args: Any, headers: Any = None, **kwargs: Any) -> Any:
        if headers:
            headers = headers.copy()
            for name in ("accept", "content-type"):
                if name in headers:
                    headers[name] = headers[name].replace("compatible-with=9", f"compatible-with={version}")
        return original(method, target, *args, headers=headers, **kwargs)

    transport.perform_request = perform_request


@dataclass
class FailedStart:
    """A stand-in that exited before `ready` (a bootstrap check failed): its exit status and stderr."""

    status: int
    stderr: str


def failed_start(data_dir: Path, timeout: float = DEADLINE, **options: Any) -> FailedStart:
    """Start a stand-in that must not start (e.g. a bad `model_repository`); fails the test if it prints `ready`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = StandIn(data_dir=data_dir, options=options, log_path=data_dir.parent / f"{data_dir.name}.log")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.run(server._argv(), cwd=REPO, env=env, capture_output=True, stdin=subprocess.DEVNULL,
                             timeout=timeout, check=False)
    assert not process.stdout.startswith(b"ready "), "the stand-in started"
    return FailedStart(process.returncode, process.stderr.decode("utf-8", errors="replace"))


def start_standin(data_dir: Path, *, log_path: Path | None = None, tls: bool = False, **options: Any) -> StandIn:
    """Start one stand-in. Options: es_version, license, user, api_key, tls / tls_dir,
    max_content_length, fail, model_repository, config_dir, ml_platform, port (0: a free one)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if tls and options.get("tls_dir") is None:
        options["tls_dir"] = data_dir / "tls"
    port = int(options.pop("port", 0) or 0)
    server = StandIn(data_dir=data_dir, options=options, log_path=log_path or data_dir.parent / f"{data_dir.name}.log",
                     port=port)
    return server.launch()


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[Callable[..., StandIn]]:
    """Factory: `standin(**options) -> StandIn`, a real stand-in process, killed at teardown.

    Without `data_dir`, each call gets its own directory under the test's tmp_path.
    """
    started: list[StandIn] = []

    def start(data_dir: Path | None = None, **options: Any) -> StandIn:
        server = start_standin(data_dir or tmp_path / f"standin-{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
