"""eland's cluster flags and variables on `esbundle load` and `status`, against the real stand-in process, driven
through the CLI: --es-username/--es-password/--es-api-key, --cloud-id and CLOUD_ID, credentials in the URL,
--clear-previous, which credential wins (flags > URL > environment), conflicting flags, and the pointer printed for
eland's flags that belong to `esbundle export`. No credential is ever printed or written to a receipt.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import Result

from loader.cli.eland import CONNECTED_PHASE_FLAGS
from tests.conftest import Keys, MakeBundle, RunCli
from tests.standin.fixture import StandIn
from tests.test_load import definition_sha, models, read_back

Standin = Callable[..., StandIn]

# Every character a URL parser reads as the end of the userinfo or a percent escape: `@`, `/`, `#`, `%`.
PASSWORD = "p@ss/w#rd%20x"
API_KEY_ID_SECRET = "loader-key:abc123secret"
ENCODED_API_KEY = base64.b64encode(API_KEY_ID_SECRET.encode()).decode()


def url_with(server: StandIn, user: str, password: str) -> str:
    scheme, _, host = server.url.partition("://")
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}"


def assert_never_shown(tmp_path: Path, results: list[Result], *secrets: str) -> None:
    """No secret (nor its percent-encoded form) in any output, receipt, journal or other file the runs left."""
    forms = {form for secret in secrets for form in (secret, quote(secret, safe=""))}
    printed = "\n".join(r.output for r in results)
    assert [s for s in forms if s in printed] == []
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [(p, s) for p in written for s in forms if s.encode() in p.read_bytes()] == []


def dry_run(run_cli: RunCli, bundle: Path, keys: Keys, *args: Any, env: dict[str, str] | None = None) -> Result:
    return run_cli("load", bundle, "--trusted-key", keys.pub, "--dry-run", *args, env=env)


def test_eland_user_and_password_flags(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Standin,
                                       tmp_path: Path) -> None:
    server = standin(user=f"elastic:{PASSWORD}")
    bundle = make_bundle()
    loaded = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--es-username", "elastic",
                     "--es-password", PASSWORD)
    assert loaded.exit_code == 0, loaded.output
    assert read_back(server) == definition_sha(bundle)
    listed = run_cli("status", "--url", server.url, "--es-username", "elastic", "--es-password", PASSWORD, "--json")
    assert listed.exit_code == 0 and [r["model_id"] for r in json.loads(listed.stdout)] == ["tiny-model"]
    wrong = run_cli("status", "--url", server.url, "--es-username", "elastic", "--es-password", "not-it")
    assert wrong.exit_code == 7 and "401" in wrong.stderr
    assert_never_shown(tmp_path, [loaded, listed, wrong], PASSWORD)


def test_eland_api_key_flag(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Standin,
                            tmp_path: Path) -> None:
    server = standin(api_key=API_KEY_ID_SECRET)
    loaded = run_cli("load", make_bundle(), "--trusted-key", keys.pub, "--url", server.url,
                     "--es-api-key", ENCODED_API_KEY)
    assert loaded.exit_code == 0, loaded.output
    listed = run_cli("status", "--url", server.url, "--es-api-key", ENCODED_API_KEY)
    assert listed.exit_code == 0 and "tiny-model" in listed.stdout
    assert_never_shown(tmp_path, [loaded, listed], ENCODED_API_KEY, "abc123secret")


def cloud_id_of(server: StandIn) -> str:
    """An Elastic Cloud id whose Elasticsearch address is the stand-in's: the client joins `<es_uuid>.<host>`, so
    es_uuid `127` and host `0.0.1` make 127.0.0.1; the port comes from the host part. Cloud ids always mean https."""
    decoded = f"0.0.1:{server.port}$127$kibana0"
    return "esbundle-test:" + base64.b64encode(decoded.encode()).decode()


def test_cloud_id_flag_and_variable(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Standin,
                                    tmp_path: Path) -> None:
    server = standin(user=f"elastic:{PASSWORD}", tls=True)
    cloud_id = cloud_id_of(server)
    auth = ["--ca-certs", server.ca_cert, "-u", "elastic", "-p", PASSWORD]
    by_flag = run_cli("status", "--cloud-id", cloud_id, *auth, env={"ES_URL": "http://127.0.0.1:9"})
    assert by_flag.exit_code == 0, by_flag.output
    assert "no model in this cluster came from an esbundle bundle" in by_flag.stdout
    by_variable = dry_run(run_cli, make_bundle(), keys, *auth, "--json", env={"CLOUD_ID": cloud_id})
    assert by_variable.exit_code == 0, by_variable.output
    receipt = json.loads(by_variable.stdout)
    assert receipt["target"] == "esbundle-test (cloud id)" and receipt["outcome"] == "dry-run"
    malformed = run_cli("status", "--cloud-id", "esbundle-test:not-base64!", *auth)
    assert malformed.exit_code == 2 and "Cloud ID is not properly formatted" in malformed.stderr
    assert_never_shown(tmp_path, [by_flag, by_variable, malformed], PASSWORD)


def test_credentials_in_the_url_percent_encoded(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                standin: Standin, tmp_path: Path) -> None:
    server = standin(user=f"elastic:{PASSWORD}")
    url = url_with(server, "elastic", PASSWORD)
    bundle = make_bundle()
    loaded = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", url, "--json")
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["target"] == server.url
    assert read_back(server) == definition_sha(bundle)
    from_variable = run_cli("status", env={"ES_URL": url})
    assert from_variable.exit_code == 0 and "tiny-model" in from_variable.stdout
    wrong = run_cli("status", "--url", url_with(server, "elastic", PASSWORD + "!"))
    assert wrong.exit_code == 7 and "401" in wrong.stderr and server.url in wrong.stderr
    assert_never_shown(tmp_path, [loaded, from_variable, wrong], PASSWORD, PASSWORD + "!")


# Each credential's value names where it was given; the stand-in accepts only the one that must win.
FLAG_USER, URL_USER, ENV_USER = ("flag-user", "flag-pw/1"), ("url-user", "url-pw#2"), ("env-user", "env-pw%3")
FLAG_KEY, ENV_KEY = "flag-key:flag-secret-4", "env-key:env-secret-5"


def _given(sources: tuple[str, ...], server: StandIn) -> tuple[list[Any], dict[str, str]]:
    """The command-line arguments and environment that give each credential source."""
    args: list[Any] = ["--url", url_with(server, *URL_USER) if "url" in sources else server.url]
    env: dict[str, str] = {}
    if "flag" in sources:
        args += ["--es-username", FLAG_USER[0], "--es-password", FLAG_USER[1]]
    if "flag-key" in sources:
        args += ["--es-api-key", base64.b64encode(FLAG_KEY.encode()).decode()]
    if "env" in sources:
        env.update(ES_USERNAME=ENV_USER[0], ES_PASSWORD=ENV_USER[1])
    if "env-key" in sources:
        env["ES_API_KEY"] = base64.b64encode(ENV_KEY.encode()).decode()
    return args, env


WINNER = {"flag": {"user": ":".join(FLAG_USER)}, "url": {"user": ":".join(URL_USER)},
          "env": {"user": ":".join(ENV_USER)}, "flag-key": {"api_key": FLAG_KEY}, "env-key": {"api_key": ENV_KEY}}


@pytest.mark.parametrize(("sources", "winner"), [
    (("flag", "url"), "flag"),
    (("flag", "env"), "flag"),
    (("url", "env"), "url"),
    (("flag", "url", "env"), "flag"),
    (("flag-key", "url"), "flag-key"),
    (("flag-key", "env"), "flag-key"),
    (("flag-key", "env-key"), "flag-key"),
    (("flag", "env-key"), "flag"),
    (("url", "env-key"), "url"),
    (("url", "env", "env-key"), "url"),
    (("env", "env-key"), "env-key"),
])
def test_which_credential_wins(sources: tuple[str, ...], winner: str, make_bundle: MakeBundle, keys: Keys,
                               run_cli: RunCli, standin: Standin, tmp_path: Path) -> None:
    server = standin(**WINNER[winner])
    args, env = _given(sources, server)
    result = dry_run(run_cli, make_bundle(), keys, *args, env=env)
    assert result.exit_code == 0, result.output
    losers = [s for s in sources if s != winner]
    loser_args, loser_env = _given(tuple(losers), server)
    refused = dry_run(run_cli, make_bundle(name="alone"), keys, *loser_args, env=loser_env)
    assert refused.exit_code == 7 and "401" in refused.stderr, refused.output
    assert_never_shown(tmp_path, [result, refused], FLAG_USER[1], URL_USER[1], ENV_USER[1],
                       *(base64.b64encode(key.encode()).decode() for key in (FLAG_KEY, ENV_KEY)))


DEAD = "http://127.0.0.1:9"  # nothing listens: a command that got as far as connecting says "did not answer"


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--url", DEAD, "--api-key", "k", "-u", "elastic"], {}, "give --api-key or -u/-p, not both"),
    (["--url", DEAD, "--es-api-key", "k", "--es-password", "pw"], {}, "give --api-key or -u/-p, not both"),
    (["--url", DEAD, "--cloud-id", "x:eA=="], {}, "give --url or --cloud-id, not both"),
    ([], {"CLOUD_ID": "x:eA==", "ES_URL": DEAD}, "ES_URL and CLOUD_ID are both set"),
    (["--url", DEAD, "-p", "pw"], {}, "-p without a user"),
    (["--url", "http://a:one@127.0.0.1:9", "--url", "http://a:two@127.0.0.2:9"], {},
     "the URLs hold different credentials"),
])
def test_conflicting_flags_are_usage_errors(args: list[str], env: dict[str, str], message: str,
                                            make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    for command in (["load", make_bundle(), "--trusted-key", keys.pub], ["status"]):
        result = run_cli(*command, *args, env=env)
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert "did not answer" not in result.output


def test_a_flag_wins_over_the_other_kind_of_location(run_cli: RunCli, standin: Standin) -> None:
    server = standin()
    result = run_cli("status", "--url", server.url, env={"CLOUD_ID": "elsewhere:eA=="})
    assert result.exit_code == 0, result.output


def test_clear_previous_is_replace(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Standin,
                                   tmp_path: Path) -> None:
    server = standin()
    first, second, third = (make_bundle(name=f"b{n}", bundle_version=n) for n in (1, 2, 3))
    assert run_cli("load", first, "--trusted-key", keys.pub, "--url", server.url).exit_code == 0
    refused = run_cli("load", second, "--trusted-key", keys.pub, "--url", server.url)
    assert refused.exit_code == 6 and "already held by bundle" in refused.stderr
    cleared = run_cli("load", second, "--trusted-key", keys.pub, "--url", server.url, "--clear-previous", "--json")
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout)["overrides"] == ["replace"] and read_back(server) == definition_sha(second)
    both = run_cli("load", third, "--trusted-key", keys.pub, "--url", server.url, "--clear-previous", "--replace")
    assert both.exit_code == 0, both.output
    assert read_back(server) == definition_sha(third) and models(server) == ["tiny-model"]
    receipts = [json.loads(line) for line in (tmp_path / "receipts.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in receipts] == ["loaded", "refused", "loaded", "loaded"]
    assert [r.get("overrides") for r in receipts[2:]] == [["replace"], ["replace"]]


VALUES = {"--hub-model-id": "sentence-transformers/all-MiniLM-L6-v2", "--hub-access-token": "hf_x",
          "--task-type": "text_embedding", "--max-model-input-length": "512", "--ingest-prefix": "passage: ",
          "--search-prefix": "query: "}


@pytest.mark.parametrize("flag", sorted(CONNECTED_PHASE_FLAGS))
def test_an_eland_flag_of_the_connected_phase_points_to_export(flag: str, make_bundle: MakeBundle, keys: Keys,
                                                               run_cli: RunCli, standin: Standin) -> None:
    server = standin()
    given = [flag, VALUES[flag]] if flag in VALUES else [flag]
    result = run_cli("load", make_bundle(), "--trusted-key", keys.pub, "--url", server.url, *given, "--start")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"usage error: {flag} belongs to `esbundle export` on the connected "
                                          "machine, which writes the bundle that `esbundle load` takes here"]
    assert "HTTP/1.1" not in server.log()  # nothing was sent
    joined = run_cli("load", make_bundle(name="joined"), "--url", server.url, f"{flag}=x")
    assert joined.exit_code == 2 and f"{flag} belongs to `esbundle export`" in joined.stderr


def test_an_unknown_flag_is_still_clicks_error(make_bundle: MakeBundle, run_cli: RunCli) -> None:
    result = run_cli("load", make_bundle(), "--no-such-flag")
    assert result.exit_code == 2 and "No such option '--no-such-flag'" in result.stderr
