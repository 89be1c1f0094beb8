"""The cluster connection options of every command that talks to a cluster, and the `Connection` built from them.

Credentials: flag > environment (ES_URL, ES_USERNAME, ES_PASSWORD, ES_API_KEY) > prompt (password only).
Every secret is registered with the error boundary, which scrubs it from anything it prints.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from loader import settings
from loader.cli.output import emit
from loader.cluster.client import Connection
from loader.errors import UsageError


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--url", "urls", multiple=True, help="Elasticsearch URL; repeatable. Default: $ES_URL."),
        click.option("--cloud-id", help="Elastic Cloud id instead of --url."),
        click.option("-u", "--username", help="User for basic auth. Default: $ES_USERNAME."),
        click.option("-p", "--password", help="Password; prompted for when -u is given without it. "
                     "Default: $ES_PASSWORD."),
        click.option("--api-key", help="API key (the encoded form). Default: $ES_API_KEY."),
        click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), help="CA bundle (PEM) to trust."),
        click.option("--client-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (PEM)."),
        click.option("--client-key", type=click.Path(exists=True, dir_okay=False), help="Client key (PEM)."),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (prints a warning)."),
        click.option("--timeout", default=60.0, show_default=True, type=float, help="Seconds per request."),
    ]
    return functools.reduce(lambda cmd, opt: opt(cmd), reversed(options), command)


def build_connection(urls: tuple[str, ...], cloud_id: str | None, username: str | None, password: str | None,
                     api_key: str | None, ca_certs: str | None, client_cert: str | None, client_key: str | None,
                     insecure: bool, timeout: float, concurrency: int = 4) -> Connection:
    if urls and cloud_id:
        raise UsageError("give --url or --cloud-id, not both")
    if not urls and not cloud_id and settings.get(settings.ES_URL):
        urls = tuple(u.strip() for u in (settings.get(settings.ES_URL) or "").split(",") if u.strip())
    api_key = api_key or settings.get(settings.ES_API_KEY)
    username = username or (None if api_key else settings.get(settings.ES_USERNAME))
    if username and password is None:
        password = settings.get(settings.ES_PASSWORD)
        if password is None:
            if not sys.stdin or not sys.stdin.isatty():
                raise UsageError(f"-u {username} without a password: set {settings.ES_PASSWORD} or run in a terminal")
            password = click.prompt(f"Password for {username}", hide_input=True, err=True)
    for secret in (password, api_key, *(_url_userinfo(u) for u in urls)):
        settings.register_secret(secret)
    if insecure:
        emit("WARNING: --insecure: TLS certificates are NOT verified; anyone on the path can impersonate the "
                   "cluster", err=True)
    return Connection(urls=tuple(urls), cloud_id=cloud_id, username=username, password=password, api_key=api_key,
                      ca_certs=ca_certs, client_cert=client_cert, client_key=client_key, insecure=insecure,
                      timeout=timeout, concurrency=concurrency)


def _url_userinfo(url: str) -> str | None:
    """The credentials written into a URL, found even where a URL parser would give up (a `/` or `#` in the
    password), so they are scrubbed from anything printed."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[0] if "@" in rest else None
