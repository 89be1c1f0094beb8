"""The HTTP side of the stand-in: connections, TLS, the order of checks, routing, responses.

Owns what happens to one request before and after an endpoint handles it, in Elasticsearch's
order: authentication, the `http.max_content_length` limit (413, empty body, as Netty answers it),
REST compatibility headers, routing (400 `no handler found`, 405 for a wrong method), unknown
parameters, authorization (403 outside the user's role, authz.py), the licence check, injected faults,
the body, a `pause-at-part` hold, then the handler. With security on (`--user`, `--api-key`) it also
answers `_security/user/_has_privileges` for the authenticated user.
Every response carries `X-Elastic-Product: Elasticsearch` except the 413, which Elasticsearch's
HTTP layer sends before any of its own code runs.

Serving: threads per connection, HTTP/1.1 keep-alive, TCP_NODELAY (Nagle off, as Netty does:
without it every request waits ~40 ms for a delayed ACK and benchmarks measure the stand-in).

Also owns the stand-in's pause endpoints (not Elasticsearch APIs): `GET /_standin/pauses` lists the
requests a `pause-at-part` or `pause-start` rule holds, `POST /_standin/release` lets them go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import sys
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import authz, errors, repository, security
from .aliases import AliasApi, ModelAliases
from .api import TrainedModels
from .cluster import MODEL_REPOSITORY, ClusterInfo
from .deployments import Deployments
from .errors import EsError
from .faults import FaultPlan
from .inference_endpoints import InferenceEndpoints
from .models import Store
from .packages import PackagedModels
from .releases import release
from .rest import Request, Response, Route, check_params, route


@dataclass
class Options:
    port: int
    data_dir: Path
    es_version: str = "9.2.0"
    license: str = "trial"
    users: tuple[str, ...] = ()  # NAME:PASSWORD[:PRIVILEGE,...] (authz.parse_user)
    api_key: str | None = None
    tls_dir: Path | None = None
    max_content_length: int = 100 * 1024 * 1024
    fail: str | None = None
    quiet: bool = False
    model_repository: str | None = None  # xpack.ml.model_repository; None: Elastic's default
    config_dir: Path | None = None  # the node's config directory; None: <data_dir>/config
    ml_platform: str = "linux-x86_64"


class BootstrapFailure(Exception):
    """A bootstrap check failed: the node does not start."""


class App:
    """Everything one stand-in process knows; shared by all connection threads."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.release = release(options.es_version)
        options.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = ClusterInfo.persistent(self.release, options.license, options.data_dir)
        self.cluster.ml_platform = options.ml_platform
        config_dir = options.config_dir or options.data_dir / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        model_repository = options.model_repository or repository.DEFAULT_REPOSITORY
        failure = repository.bootstrap_failure(model_repository, config_dir, self.release.version)
        if failure is not None:
            raise BootstrapFailure(failure)
        self.cluster.node_settings = {MODEL_REPOSITORY: model_repository}
        self.faults = FaultPlan.parse(options.fail)
        self.store = Store(options.data_dir)
        try:
            users = [authz.parse_user(u, self.release.version) for u in options.users]
        except EsError as exc:  # a privilege this release does not know: Elasticsearch would refuse the role
            raise ValueError(f"--user: {exc.reason}") from None
        self.auth = security.Authenticator(users, options.api_key)
        self.aliases = ModelAliases(options.data_dir)
        self.deployments = Deployments(self.store, self.cluster, self.faults, self.aliases)
        packages = PackagedModels(self.store, self.cluster, model_repository)
        self.models = TrainedModels(self.store, self.cluster, self.deployments, self.faults, self.aliases, packages)
        alias_api = AliasApi(self.store, self.aliases, self.cluster, self.deployments)
        self.endpoints = InferenceEndpoints(options.data_dir, self.store, self.cluster, self.deployments)
        self.routes: list[Route] = [
            route("GET", "/", lambda r: Response(200, self.cluster.root())),
            route("HEAD", "/", lambda r: Response(200, self.cluster.root())),
            route("GET", "/_license", lambda r: Response(200, self.cluster.license()),
                  ("local", "accept_enterprise")),
            route("GET", "/_nodes", lambda r: Response(200, self.cluster.nodes()), ("flat_settings", "timeout")),
            route("GET", "/_ml/info", lambda r: Response(200, self.cluster.ml_info())),
            route("GET", "/_cluster/settings", lambda r: Response(200, self.cluster.settings(
                r.flag("include_defaults"), r.flag("flat_settings"))),
                  ("include_defaults", "local", "master_timeout", "flat_settings", "settings_filter")),
            *self.models.routes(),
            *self.deployments.routes(),
            *alias_api.routes(),
            *self.endpoints.routes(),
            *(self._security_routes() if self.auth.enabled else []),
            route("GET", "/_standin/pauses", lambda r: Response(200, {"held": self.faults.held()})),
            route("POST", "/_standin/release", self.release_holds, ("point", "model_id", "part")),
        ]
        # Literal path segments win over placeholders, as in Elasticsearch's path trie:
        # `/_ml/trained_models/_stats` is not a model called `_stats`.
        self.routes.sort(key=lambda r: r.pattern.pattern.count("(?P<"))

    @staticmethod
    def _security_routes() -> list[Route]:
        """RestHasPrivilegesAction's routes; answered in Handler._handle, which knows the user."""
        def answered_by_the_handler(request: Request) -> Response:
            raise AssertionError("has_privileges is answered with the authenticated user")

        return [route(method, path, answered_by_the_handler, name="has_privileges")
                for method in ("GET", "POST")
                for path in ("/_security/user/_has_privileges", "/_security/user/{username}/_has_privileges")]

    def has_privileges(self, request: Request, user: authz.User) -> Response:
        asked = request.path_params.get("username")
        if asked is not None and asked != user.name:
            raise errors.not_emulated(f"_has_privileges for another user ([{asked}])")
        try:
            body = json.loads(request.body) if request.body.strip() else None
        except ValueError:
            raise errors.not_emulated("malformed JSON in a _has_privileges request") from None
        return Response(200, authz.has_privileges(user, body, self.release.version))

    def release_holds(self, request: Request) -> Response:
        """`POST /_standin/release[?point=part|start][&model_id=ID][&part=N]`: let the matching holds go on."""
        point = request.params.get("point")
        if point not in (None, "part", "start"):
            raise errors.illegal_argument(f"[point] must be [part] or [start], not [{point}]")
        released = self.faults.release(point, request.params.get("model_id"), request.integer("part"))
        return Response(200, {"released": released})

    def find_route(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        allowed = []
        for candidate in self.routes:
            match = candidate.pattern.match(path)
            if match:
                if candidate.method == method:
                    return candidate, {k: unquote(v) for k, v in match.groupdict().items()}, []
                allowed.append(candidate.method)
        return None, {}, allowed


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: StandInServer

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.app.options.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # --- reading ----------------------------------------------------------------------------------

    def _length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return 0

    def _read(self, length: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(length) if length else b""

    def _drain(self, length: int) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._read(0)  # a chunked body has to be consumed chunk by chunk
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    # --- the pipeline -------------------------------------------------------------------------------

    def _handle(self) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        request = Request(self.command, split.path or "/", self.path, params,
                          {k.lower(): v for k, v in self.headers.items()})
        length = self._length()
        accept = request.headers.get("accept")
        body_read = False
        try:
            user = app.auth.check(request.headers.get("authorization"), request.uri)
            if length > app.options.max_content_length:
                self._drain(length)
                self._send(Response(413, raw=b"", content_type=None), product=False)
                return
            has_content = length > 0 or "chunked" in request.headers.get("transfer-encoding", "")
            security.compatible_version(accept, request.headers.get("content-type"), has_content, app.cluster.major)
            handler_route, request.path_params, allowed = app.find_route(request.method, request.path)
            if handler_route is None:
                raise _no_handler(request, allowed)
            check_params(request, handler_route.params)
            authz.authorize(user, request.method, request.path, app.release.version)
            if handler_route.licensed and app.options.license == "basic":
                raise errors.license_non_compliant()
            if handler_route.name == "part" and self._part_fault(request, length):
                return
            request.body, body_read = self._read(length), True
            if handler_route.name == "part":
                self._part_hold(request)
            if handler_route.name == "has_privileges" and user is not None:
                response = app.has_privileges(request, user)
            else:
                response = handler_route.handler(request)
        except _StringError as exc:
            response = Response(exc.status, {"error": exc.message, "status": exc.status}, headers=exc.headers)
        except EsError as exc:
            response = Response(exc.status, exc.body(), headers=exc.headers)
        except Exception as exc:  # a stand-in bug must still answer like a server, and say what broke
            traceback.print_exc()
            response = Response(500, EsError(500, "exception", f"{type(exc).__name__}: {exc}").body())
        if not body_read:
            self._drain(length)
        if response.after == "crash":
            os._exit(3)
        content_type = None if response.raw is not None else (
            "application/json" if response.status >= 400 and _is_media_error(response) else
            security.response_content_type(accept))
        try:
            self._send(response, content_type=response.content_type or content_type,
                       pretty=request.params.get("pretty") in ("", "true"))
        except (BrokenPipeError, ConnectionResetError):
            # The client went away (e.g. killed while its request was held): the work is done, the answer lost.
            self.close_connection = True
            self.log_message("%s", f"client gone before the answer to {request.method} {request.path}")
        if response.after == "exit":
            with contextlib.suppress(OSError):
                self.wfile.flush()
            os._exit(3)

    def _part_hold(self, request: Request) -> None:
        """`pause-at-part`: the part was received whole; hold it, unanswered and not stored, until released."""
        part_text = request.path_params["part"]
        if part_text.lstrip("-").isdigit():
            self.server.app.faults.hold_part(request.path_params["model_id"], int(part_text))

    def _part_fault(self, request: Request, length: int) -> bool:
        """Apply the --fail plan to a part upload; True when the request was consumed by a fault."""
        app = self.server.app
        model_id, part_text = request.path_params["model_id"], request.path_params["part"]
        if not part_text.lstrip("-").isdigit():
            return False
        part = int(part_text)
        drop, injected = app.faults.part_arrived(model_id, part)
        if drop:
            self._drain(length // 2)
            app.store.record_attempt(model_id, part, "closed")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if injected is not None:
            self._drain(length)
            app.store.record_attempt(model_id, part, f"injected-{injected.status}")
            self._send(Response(injected.status, injected.body()),
                       content_type=security.response_content_type(request.headers.get("accept")))
            return True
        return False

    # --- writing ------------------------------------------------------------------------------------

    def _send(self, response: Response, content_type: str | None = None, product: bool = True,
              pretty: bool = False) -> None:
        delay = self.server.app.faults.delay
        if delay:
            time.sleep(delay)
        if response.raw is not None:
            payload = response.raw
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body, indent=2 if pretty else None,
                                 separators=None if pretty else (",", ":")).encode("utf-8")
        # Elasticsearch sends neither Server nor Date headers.
        self.log_request(response.status)
        self.send_response_only(response.status)
        if product:
            self.send_header("X-Elastic-Product", "Elasticsearch")
        if content_type and payload:
            self.send_header("Content-Type", content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)


class _StringError(Exception):
    """RestController's own answers, whose `error` is a plain string rather than an object."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


def _no_handler(request: Request, allowed: list[str]) -> _StringError:
    if allowed:
        methods = ", ".join(sorted(set(allowed)))
        return _StringError(405, f"Incorrect HTTP method for uri [{request.uri}] and method [{request.method}], "
                                 f"allowed: [{methods}]", [("Allow", methods)])
    return _StringError(400, f"no handler found for uri [{request.uri}] and method [{request.method}]")


def _is_media_error(response: Response) -> bool:
    error = (response.body or {}).get("error") if isinstance(response.body, dict) else None
    return isinstance(error, dict) and error.get("type") == "media_type_header_exception"


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, app: App) -> None:
        self.app = app
        self.tls = security.tls_context(app.options.tls_dir) if app.options.tls_dir else None
        super().__init__(("127.0.0.1", app.options.port), Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs on the connection's own thread, never blocking the accept loop.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"
