"""Cluster connections through an HTTP proxy: HTTP_PROXY (either case) and --proxy carry a whole load, NO_PROXY goes
direct, --proxy wins over the environment, a refusing or absent proxy is a clear error naming it, and credentials in
a proxy URL arrive as Proxy-Authorization and are never printed or written.

The stand-in is reached only through the proxy: the commands name it `standin.invalid`, a name that resolves
nowhere (RFC 2606), and the test proxy relays that name to 127.0.0.1.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import Result

from tests.conftest import Keys, MakeBundle, RunCli
from tests.proxy_server import ProxyServer
from tests.standin.fixture import StandIn
from tests.test_eland_cluster_flags import assert_never_shown
from tests.test_load import definition_sha, models, read_back

Standin = Callable[..., StandIn]
HOST = "standin.invalid"
DEAD_PROXY = "http://127.0.0.1:9"
PROXY_PASSWORD = "pr@xy/pw#1%2"


class NamingProxy(ProxyServer):
    """The test proxy, relaying `standin.invalid` to 127.0.0.1 (the proxy resolves names, its clients do not)."""

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        handler.path = handler.path.replace(f"://{HOST}:", "://127.0.0.1:", 1)
        super()._relay(handler)


@pytest.fixture
def proxies() -> Iterator[Callable[..., NamingProxy]]:
    started: list[NamingProxy] = []

    def start(refuse: bool = False) -> NamingProxy:
        started.append(NamingProxy(refuse=refuse).start())
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def hidden(server: StandIn) -> str:
    """The stand-in's URL under the name only the proxy resolves."""
    return f"http://{HOST}:{server.port}"


def with_credentials(proxy: NamingProxy, user: str = "proxy-user", password: str = PROXY_PASSWORD) -> str:
    return proxy.url.replace("://", f"://{user}:{quote(password, safe='')}@", 1)


def load(run_cli: RunCli, bundle: Path, keys: Keys, url: str, *args: str, env: dict[str, str] | None = None
         ) -> Result:
    return run_cli("load", bundle, "--trusted-key", keys.pub, "--url", url, *args, env=env)


def test_http_proxy_variable_carries_the_whole_load(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                    standin: Standin, proxies: Callable[..., NamingProxy]) -> None:
    server, proxy = standin(), proxies()
    direct = run_cli("status", "--url", hidden(server))
    assert direct.exit_code == 7 and "did not answer" in direct.stderr  # no way around the proxy
    bundle = make_bundle(200_000, part_size=64 << 10)
    loaded = load(run_cli, bundle, keys, hidden(server), env={"HTTP_PROXY": proxy.url})
    assert loaded.exit_code == 0, loaded.output
    assert read_back(server) == definition_sha(bundle)
    assert {"GET", "PUT"} <= set(proxy.methods)
    assert proxy.relayed[0] == f"http://127.0.0.1:{server.port}/"
    assert sum(m == "PUT" and "/definition/" in url for m, url in zip(proxy.methods, proxy.relayed, strict=True)) == 4
    seen = len(proxy.relayed)
    lower = run_cli("status", "--url", hidden(server), env={"http_proxy": proxy.url})
    assert lower.exit_code == 0 and "tiny-model" in lower.stdout and len(proxy.relayed) > seen


def test_proxy_flag_wins_over_the_environment(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                              standin: Standin, proxies: Callable[..., NamingProxy]) -> None:
    server, proxy = standin(), proxies()
    env = {"HTTP_PROXY": DEAD_PROXY, "http_proxy": DEAD_PROXY, "NO_PROXY": HOST}
    loaded = load(run_cli, make_bundle(), keys, hidden(server), "--proxy", proxy.url, env=env)
    assert loaded.exit_code == 0, loaded.output
    assert proxy.relayed and models(server) == ["tiny-model"]


def test_no_proxy_goes_direct(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Standin,
                              proxies: Callable[..., NamingProxy]) -> None:
    server, proxy = standin(), proxies()
    through = run_cli("status", "--url", server.url, env={"HTTP_PROXY": proxy.url})
    assert through.exit_code == 0 and proxy.relayed  # 127.0.0.1 itself is proxied unless NO_PROXY says otherwise
    proxy.relayed.clear()
    direct = load(run_cli, make_bundle(), keys, server.url, env={"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"})
    assert direct.exit_code == 0, direct.output
    networks = run_cli("status", "--url", server.url, env={"http_proxy": proxy.url,
                                                             "no_proxy": "localhost,10.0.0.0/8,127.0.0.0/8"})
    assert networks.exit_code == 0 and "tiny-model" in networks.stdout
    assert proxy.relayed == [] and models(server) == ["tiny-model"]
    # The hidden name listed in NO_PROXY: the command tries to connect directly, fails, and the proxy sees nothing.
    bypassed = run_cli("status", "--url", hidden(server), env={"HTTP_PROXY": proxy.url, "NO_PROXY": ".invalid"})
    assert bypassed.exit_code == 7 and "did not answer" in bypassed.stderr and "proxy" not in bypassed.stderr
    assert proxy.relayed == []


def test_a_refusing_proxy_is_named(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Standin,
                                   proxies: Callable[..., NamingProxy], tmp_path: Path) -> None:
    server, proxy = standin(), proxies(refuse=True)
    refused = load(run_cli, make_bundle(), keys, hidden(server), "--proxy", with_credentials(proxy))
    assert refused.exit_code == 7
    assert f"cannot reach the cluster: proxy {proxy.url} answered 502 for {hidden(server)}" in refused.stderr
    assert "hint: check the proxy" in refused.stderr and "nothing was uploaded" in refused.stderr
    assert proxy.methods == ["GET"] and models(server) == []
    by_variable = run_cli("status", "--url", hidden(server), env={"HTTP_PROXY": with_credentials(proxy)})
    assert by_variable.exit_code == 7 and f"proxy {proxy.url} answered 502" in by_variable.stderr
    absent = load(run_cli, make_bundle(name="again"), keys, hidden(server), "--proxy", DEAD_PROXY)
    assert absent.exit_code == 7
    assert f"cannot reach the cluster: {hidden(server)} did not answer through proxy {DEAD_PROXY} (" in absent.stderr
    assert_never_shown(tmp_path, [refused, by_variable, absent], PROXY_PASSWORD)


def test_proxy_credentials_are_sent_to_the_proxy_and_never_shown(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Standin,
        proxies: Callable[..., NamingProxy], tmp_path: Path) -> None:
    server, proxy = standin(), proxies()
    expected = "Basic " + base64.b64encode(f"proxy-user:{PROXY_PASSWORD}".encode()).decode()
    loaded = load(run_cli, make_bundle(), keys, hidden(server), "--proxy", with_credentials(proxy), "--json")
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["target"] == hidden(server)
    # HTTPS_PROXY is for https URLs: this http one goes through HTTP_PROXY.
    listed = run_cli("status", "--url", hidden(server), env={"HTTPS_PROXY": DEAD_PROXY,
                                                              "HTTP_PROXY": with_credentials(proxy)})
    assert listed.exit_code == 0 and "tiny-model" in listed.stdout
    assert proxy.proxy_authorization and set(proxy.proxy_authorization) == {expected}
    assert_never_shown(tmp_path, [loaded, listed], PROXY_PASSWORD)
