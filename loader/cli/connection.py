"""The cluster connection options of every command that talks to a cluster, and the `Connection` built from them.

Where: --url (repeatable) or --cloud-id; without either, ES_URL or CLOUD_ID. Both flags, or both variables without a
flag, are a usage error; a flag wins over the other kind's variable.

Credentials, each from the first place that has it:
  1. flags: --api-key (eland: --es-api-key), or -u/-p (eland: --es-username/--es-password); --api-key with -u or -p
     is a usage error. -u without -p takes the URL's password when the URL names the same user, else ES_PASSWORD,
     else a prompt on a terminal; -p without -u pairs with the URL's user, else ES_USERNAME.
  2. the URL: https://USER:PASSWORD@HOST:9200, percent-encoded (%40 for @, %2F for /, %23 for #, %25 for %).
  3. the environment: ES_API_KEY, else ES_USERNAME with ES_PASSWORD (or a prompt).
Credentials in the URL win over every variable, ES_API_KEY included. eland (9.2, with elasticsearch-py 9) does
otherwise: its client sends the variables' credentials over the URL's.

Proxy: --proxy URL, else HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (or lower case) by the cluster URL's scheme, skipped
for the hosts NO_PROXY lists; --proxy wins over all of them, NO_PROXY included. Credentials in a proxy URL
(http://USER:PASSWORD@PROXY:3128) are sent as Proxy-Authorization.

Every secret (passwords, API keys, credentials in a cluster or proxy URL, as written and percent-decoded) is
registered with the error boundary, which scrubs it from anything it prints.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from loader import settings
from loader.cli.output import emit
from loader.cluster.client import Connection, split_credentials
from loader.errors import UsageError


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--url", "urls", multiple=True, help="Elasticsearch URL, credentials may be in it "
                     "(https://USER:PASSWORD@HOST:9200); repeatable. Default: $ES_URL."),
        click.option("--cloud-id", help="Elastic Cloud id instead of --url. Default: $CLOUD_ID."),
        click.option("-u", "--username", "--es-username", "username", help="User for basic auth. "
                     "Default: the URL's user, then $ES_USERNAME."),
        click.option("-p", "--password", "--es-password", "password", help="Password; prompted for when none is "
                     "given. Default: the URL's password, then $ES_PASSWORD."),
        click.option("--api-key", "--es-api-key", "api_key", help="API key (the encoded form). Default: $ES_API_KEY "
                     "(when the URL holds no credentials)."),
        click.option("--proxy", metavar="URL", help="HTTP proxy to the cluster (http://[USER:PASSWORD@]HOST:PORT). "
                     "Default: $HTTPS_PROXY / $HTTP_PROXY, except for hosts in $NO_PROXY."),
        click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), help="CA bundle (PEM) to trust."),
        click.option("--client-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (PEM)."),
        click.option("--client-key", type=click.Path(exists=True, dir_okay=False), help="Client key (PEM)."),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (prints a warning)."),
        click.option("--timeout", default=60.0, show_default=True, type=float, help="Seconds per request."),
    ]
    return functools.reduce(lambda cmd, opt: opt(cmd), reversed(options), command)


def build_connection(urls: tuple[str, ...], cloud_id: str | None, username: str | None, password: str | None,
                     api_key: str | None, proxy: str | None, ca_certs: str | None, client_cert: str | None,
                     client_key: str | None, insecure: bool, timeout: float, concurrency: int = 4) -> Connection:
    urls, cloud_id = _location(urls, cloud_id)
    for url in (*urls, proxy):
        _register_url_secrets(url)
    settings.register_proxy_secrets()
    username, password, api_key = _credentials(urls, username, password, api_key)
    for secret in (password, api_key, settings.get(settings.ES_PASSWORD), settings.get(settings.ES_API_KEY)):
        settings.register_secret(secret)
    if insecure:
        emit("WARNING: --insecure: TLS certificates are NOT verified; anyone on the path can impersonate the "
             "cluster", err=True)
    return Connection(urls=tuple(split_credentials(u)[0] for u in urls), cloud_id=cloud_id, username=username,
                      password=password, api_key=api_key, proxy=proxy, ca_certs=ca_certs, client_cert=client_cert,
                      client_key=client_key, insecure=insecure, timeout=timeout, concurrency=concurrency)


def _location(urls: tuple[str, ...], cloud_id: str | None) -> tuple[tuple[str, ...], str | None]:
    """(URLs, cloud id), one of them: the flags, else the environment."""
    if urls and cloud_id:
        raise UsageError("give --url or --cloud-id, not both")
    if urls or cloud_id:
        return urls, cloud_id
    env_urls, env_cloud_id = settings.get(settings.ES_URL), settings.get(settings.CLOUD_ID)
    if env_urls and env_cloud_id:
        raise UsageError(f"{settings.ES_URL} and {settings.CLOUD_ID} are both set",
                         hint="pass --url or --cloud-id to say which cluster")
    return tuple(u.strip() for u in (env_urls or "").split(",") if u.strip()), env_cloud_id


def _credentials(urls: tuple[str, ...], username: str | None, password: str | None,
                 api_key: str | None) -> tuple[str | None, str | None, str | None]:
    """(username, password, API key), at most one kind: flags > credentials in the URL > environment."""
    if api_key and (username or password is not None):
        raise UsageError("give --api-key or -u/-p, not both")
    if api_key:
        return None, None, api_key
    url_user, url_password = _url_credentials(urls)
    if not (username or password is not None or url_user):
        api_key = settings.get(settings.ES_API_KEY)
        if api_key:
            return None, None, api_key
    user = username or url_user or settings.get(settings.ES_USERNAME)
    if user is None:
        if password is not None:
            raise UsageError("-p without a user", hint="give -u USER too (or write the user in the URL)")
        return None, None, None
    if password is None and user == url_user:
        password = url_password
    return user, _password(user) if password is None else password, None


def _url_credentials(urls: tuple[str, ...]) -> tuple[str | None, str | None]:
    found = {credentials for credentials in (split_credentials(u)[1] for u in urls) if credentials}
    if len(found) > 1:
        raise UsageError("the URLs hold different credentials", hint="write them once, with -u and -p")
    return found.pop() if found else (None, None)


def _password(username: str) -> str:
    password = settings.get(settings.ES_PASSWORD)
    if password is None:
        if not sys.stdin or not sys.stdin.isatty():
            raise UsageError(f"-u {username} without a password: set {settings.ES_PASSWORD} or run in a terminal")
        password = click.prompt(f"Password for {username}", hide_input=True, err=True)
    return password


def _register_url_secrets(url: str | None) -> None:
    """The credentials written into a URL, found even where a URL parser would give up (a `/` or `#` in the
    password), as written and percent-decoded, so they are scrubbed from anything printed."""
    rest = (url or "").split("://", 1)[-1]
    if "@" not in rest:
        return
    userinfo = rest.rsplit("@", 1)[0]
    settings.register_secret(userinfo)
    credentials = split_credentials(url or "")[1]
    if credentials and credentials[1]:
        settings.register_secret(userinfo.partition(":")[2])
        settings.register_secret(credentials[1])
