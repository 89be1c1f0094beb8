"""The offline side's one network chokepoint: an Elasticsearch client that speaks to 8.x and 9.x clusters.

The 9.x Python client announces `compatible-with=9` on every request, which 8.x servers refuse with a 400, and
its API methods set that header per request (a client-wide header option cannot override it). So the transport
rewrites the header on the way out: the first request (`GET /`) says `compatible-with=8`, which 8.x and 9.x
servers both accept; the cluster's major version is read from the answer, and every later request carries that
major's compatibility header. Every error becomes a `ClusterError` that quotes Elasticsearch's own
type and reason and never a credential.

Proxies: the client's default node class (urllib3 connection pools) never uses one. When `--proxy` or a proxy
variable is set, the nodes are the client's `requests` node class instead (as eland's are), whose session speaks to
HTTP proxies (absolute-form requests, CONNECT tunnels for https, Proxy-Authorization from the proxy URL). Its own
reading of the environment is off (it would also take credentials from ~/.netrc and a CA from REQUESTS_CA_BUNDLE):
each node gets `--proxy`, else the proxy the environment names for its URL (NO_PROXY honoured), from one place,
settings.environment_proxy.
"""
from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from loader import settings
from loader.cluster.denials import denial_hint
from loader.errors import ClusterError, UsageError
from loader.releases.libtorch import Version, parse_version

T = TypeVar("T")
GATEWAY_STATUSES = (502, 503, 504)  # also what a proxy answers when it cannot relay
RETRY_STATUSES = (429, *GATEWAY_STATUSES)


@dataclass(frozen=True)
class Connection:
    urls: tuple[str, ...] = ()
    cloud_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    proxy: str | None = field(default=None, repr=False)  # --proxy (may hold credentials): wins over the environment
    ca_certs: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool = False
    timeout: float = 60.0
    concurrency: int = 4

    @property
    def target(self) -> str:
        """Where we connect, safe to print: never credentials."""
        return self.cloud_id.split(":")[0] + " (cloud id)" if self.cloud_id else ", ".join(map(redact_url, self.urls))


def split_credentials(url: str) -> tuple[str, tuple[str, str | None] | None]:
    """(the URL without credentials, (user, password) or None), percent-decoded; the password is None when the URL
    names a user only. Done on the text, not with a URL parser: a password may hold `/`, `#` or `?`, which a parser
    would read as the end of the host."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url, None
    userinfo, host = rest.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://{host}", (unquote(user), unquote(password) if colon else None)


def redact_url(url: str) -> str:
    return split_credentials(url)[0]


def _error_text(exc: Exception) -> tuple[int | None, str, str]:
    """(status, Elasticsearch error type, reason) from any client exception."""
    from elasticsearch import ApiError

    if isinstance(exc, ApiError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        return exc.meta.status, str(error.get("type", "")), str(error.get("reason", exc.message))
    # The transport's errors say only "Connection error" as text; their message names the cause (refused, proxy, TLS).
    return None, type(exc).__name__, (getattr(exc, "message", None) or str(exc)).split(" caused by:")[0]


@dataclass
class RetryPolicy:
    attempts: int = 8
    base: float = 0.25
    cap: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    count: int = 0  # retries made, for the receipt

    def delay(self, attempt: int) -> float:
        import random

        # Full jitter: concurrent workers that failed together do not come back together.
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


class Cluster:
    """A connected client with the right compatibility header, and retries with backoff where they are safe."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.retry = RetryPolicy()
        self._client = self._build(connection)
        # Where each node's requests go through, safe to print (no credentials): named by every connection error.
        self.proxies = sorted({redact_url(node.proxy_url) for node in self._client.transport.node_pool.all()
                               if getattr(node, "proxy_url", None)})
        self._client.transport.compat_major = 8
        info = self.call("reach the cluster", lambda c: c.info(), retry=False)
        self.info: dict[str, Any] = dict(info)
        self.version: Version = parse_version(self.info["version"]["number"])
        self._client.transport.compat_major = min(self.version[0], 9)
        self.client = self._client

    @staticmethod
    def _build(c: Connection) -> Any:
        """The client. Credentials come resolved in `c` (loader/cli/connection.py); any left in a URL are dropped."""
        from elasticsearch import Elasticsearch

        if not c.urls and not c.cloud_id:
            raise UsageError("no cluster given", hint="pass --url URL (or set ES_URL) or --cloud-id ID")
        hosts = [split_credentials(url)[0] for url in c.urls]
        for bare in hosts:
            parts = urlsplit(bare)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UsageError(f"--url {bare}: not an http(s) URL")
        options: dict[str, Any] = {
            "request_timeout": c.timeout, "max_retries": 0, "retry_on_timeout": False,
            "connections_per_node": max(c.concurrency + 2, 10),
            "verify_certs": not c.insecure, "ssl_show_warn": False,
        }
        tls = {"ca_certs": None if c.insecure else c.ca_certs, "client_cert": c.client_cert,
               "client_key": c.client_key}
        options.update({name: value for name, value in tls.items() if value})
        if c.api_key:
            options["api_key"] = c.api_key
        elif c.username is not None:
            options["basic_auth"] = (c.username, c.password or "")
        if c.proxy or settings.environment_proxies():
            options["node_class"] = _proxied_node(c.proxy)
        if c.insecure:  # the CLI printed its warning once; urllib3 would repeat it on every request
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Elasticsearch(hosts or None, cloud_id=c.cloud_id, transport_class=_compat_transport(),
                                     **options)
        except ValueError as exc:  # a malformed cloud id, mostly: the client's own words
            raise UsageError(f"cannot connect to {c.target}: {exc}") from None

    def call(self, what: str, request: Callable[[Any], T], *, retry: bool = True,
             ok_statuses: tuple[int, ...] = ()) -> T:
        """Run one request; retry 429/5xx-gateway and dropped connections with backoff; anything else stops.

        `ok_statuses`: statuses the caller handles itself (the ApiError is re-raised to it untouched).
        """
        from elasticsearch import ApiError, ConnectionError, ConnectionTimeout

        client = getattr(self, "client", None) or self._client
        attempt = 0
        while True:
            try:
                return request(client)
            except ApiError as exc:
                if exc.meta.status in ok_statuses:
                    raise
                if not (retry and exc.meta.status in RETRY_STATUSES and attempt + 1 < self.retry.attempts):
                    raise self._failure(what, exc) from None
            except (ConnectionError, ConnectionTimeout) as exc:
                if not (retry and attempt + 1 < self.retry.attempts):
                    raise self._failure(what, exc) from None
            self.retry.count += 1
            self.retry.sleep(self.retry.delay(attempt))
            attempt += 1

    def _failure(self, what: str, exc: Exception) -> ClusterError:
        status, kind, reason = _error_text(exc)
        target = self.connection.target
        proxy = ", ".join(self.proxies)
        if proxy and kind != "TlsError" and (status is None or (status in GATEWAY_STATUSES and not kind)):
            # Not Elasticsearch's answer: the proxy's own (502 and the like, with no Elasticsearch error in it).
            text = (f"{target} did not answer through proxy {proxy} ({kind}: {reason})" if status is None
                    else f"proxy {proxy} answered {status} for {target}")
            return ClusterError(f"cannot {what}: {text}",
                                hint="check the proxy (--proxy, HTTPS_PROXY/HTTP_PROXY) and that it lets this host "
                                     "reach the cluster; NO_PROXY lists the hosts to reach directly")
        if status is None:
            return ClusterError(f"cannot {what}: {target} did not answer ({kind}: {reason})",
                                hint="check --url, the network path, and TLS options (--ca-certs, --insecure)")
        hint = None
        if status == 401:
            hint = "check the credentials (-u/-p, --api-key, in the URL, or ES_USERNAME/ES_PASSWORD/ES_API_KEY)"
        elif status == 403:
            # A privilege denial names what grants the action; any other 403 here is the licence's.
            hint = denial_hint(reason) or "the cluster's licence must include machine learning (platinum, " \
                "enterprise or trial)"
        return ClusterError(f"cannot {what}: {target} answered {status} {kind}: {reason}", hint=hint)


_COMPAT_RE = re.compile(r"compatible-with=\d+")


def _compat_transport() -> type:
    from elastic_transport import Transport

    class CompatTransport(Transport):  # type: ignore[misc]
        """Sends the compatibility header of the cluster's major version instead of the client's own."""

        compat_major: int | None = None

        def perform_request(self, method: str, target: str, *, headers: Any = None, **kwargs: Any) -> Any:
            if headers is not None and self.compat_major is not None:
                headers = headers.copy()
                for name in ("accept", "content-type"):
                    if name in headers:
                        headers[name] = _COMPAT_RE.sub(f"compatible-with={self.compat_major}", headers[name])
            return super().perform_request(method, target, headers=headers, **kwargs)

    return CompatTransport


def _proxied_node(flag: str | None) -> type:
    from elastic_transport import RequestsHttpNode

    class ProxiedNode(RequestsHttpNode):  # type: ignore[misc]
        """The client's `requests` node, through `--proxy` or the environment's proxy for this node's URL."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.session.trust_env = False  # no ~/.netrc credentials, no REQUESTS_CA_BUNDLE over --ca-certs
            self.proxy_url = flag or settings.environment_proxy(self.base_url)
            self.session.proxies = {config.scheme: self.proxy_url} if self.proxy_url else {}

    return ProxiedNode
