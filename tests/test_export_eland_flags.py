"""eland's export-side spellings on `esbundle export` (#17): `--hub-model-id` also takes a local folder (an existing
directory wins, as with eland), `--task-type` defaults to auto and takes eland's names, `--hub-access-token` and
`HUB_ACCESS_TOKEN` carry the hub token (never printed, never in the bundle), and the hub download honours
HTTP(S)_PROXY / NO_PROXY. The real command line: in-process where no hub is involved, in a subprocess against the
local hub server (and a forwarding proxy) otherwise.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch  # noqa: F401  (declared in [export]: missing is an error, not a skip)

from bundler.export.options import ExportOptions, derive_es_model_id, normalise_task_type
from bundler.keys import KeyPair, generate_keypair
from loader import settings
from loader.format.manifest import Manifest
from tests import models
from tests.conftest import Keys, RunCli
from tests.hub_export import CLASSIFIER, PRIVATE_NER, TOKEN, export, files_containing, shared_repos
from tests.hub_server import HubServer
from tests.proxy_server import ProxyServer

WRONG = "hf_wrong_token_9876543210"
PROXY_SECRET = "pr0xy-s3cret"
# eland's SUPPORTED_TASK_TYPES (eland/ml/pytorch/transformers.py), the values its --task-type accepts.
ELAND_TASK_TYPES = ("fill_mask", "ner", "pass_through", "question_answering", "text_classification",
                    "text_embedding", "text_expansion", "text_similarity", "zero_shot_classification")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.bert(tmp_path_factory.mktemp("local") / "classifier", labels=["NO", "YES"])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer()
    for repo in shared_repos(tmp_path_factory.mktemp("hub-models")):
        server.add(repo)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def proxy() -> Iterator[ProxyServer]:
    server = ProxyServer().start()
    yield server
    server.stop()


def eland_model_id(model_id: str) -> str:
    """eland's elasticsearch_model_id (eland/ml/pytorch/transformers.py), for comparison."""
    es_id = re.sub(r"[\s\\/]", "__", model_id).lower()[-64:]
    return es_id[2:] if es_id.startswith("__") else es_id


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://esb-user:{PROXY_SECRET}@")


# --hub-model-id DIR


def test_hub_model_id_takes_a_local_directory_like_model_dir(classifier: Path, run_cli: RunCli, keys: Keys,
                                                            tmp_path: Path) -> None:
    """No --task-type either: auto finds text_classification from the architecture."""
    runs = {}
    for flag in ("--hub-model-id", "--model-dir"):
        out = tmp_path / flag.strip("-")
        result = run_cli("export", "--signing-key", keys.pair.private_path, "--out", out, flag, classifier, "--json")
        assert result.exit_code == 0, result.output
        runs[flag] = (json.loads(result.stdout), Manifest.from_bytes((out / "manifest.json").read_bytes()), out)
    (by_hub_id, hub_manifest, hub_out), (by_dir, dir_manifest, dir_out) = runs["--hub-model-id"], runs["--model-dir"]
    assert by_hub_id["task_type"] == by_dir["task_type"] == "text_classification"
    assert by_hub_id["source"] == by_dir["source"] == {"kind": "directory", "directory": str(classifier)}
    assert hub_manifest.provenance["source"] == dir_manifest.provenance["source"]
    assert hub_manifest.provenance["files"] == dir_manifest.provenance["files"]
    assert hub_manifest.samples == dir_manifest.samples  # the same model answers the same (the archive bytes vary)
    assert (hub_out / "config.json").read_bytes() == (dir_out / "config.json").read_bytes()
    # The default model id: --model-dir takes the folder's name; --hub-model-id the path as given, as eland does
    # (eland's id cut to what Elasticsearch accepts: it starts and ends with a letter or digit).
    assert by_dir["es_model_id"] == "classifier"
    assert by_hub_id["es_model_id"] == derive_es_model_id(str(classifier))
    assert eland_model_id(str(classifier)).endswith(by_hub_id["es_model_id"])
    assert by_hub_id["es_model_id"].endswith("__local0__classifier")
    assert hub_manifest.model_id == by_hub_id["es_model_id"]


def test_a_directory_named_like_a_hub_id_wins_over_the_hub(hub: HubServer, publisher: KeyPair,
                                                           tmp_path: Path) -> None:
    """As with eland (transformers' from_pretrained looks for the directory first): ./tiny-org/bert-classifier is
    exported, and the hub is not asked; the default model id is the one the hub id would give."""
    work = tmp_path / "work"
    models.bert(work / "tiny-org" / "bert-classifier", labels=["ANT", "BEE", "CAT"], seed=5)
    before = len(hub.requests)
    run = export(hub, tmp_path / "hf", publisher, tmp_path / "b", "--hub-model-id", CLASSIFIER, cwd=work)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["source"] == {"kind": "directory", "directory": str(work / "tiny-org" / "bert-classifier")}
    assert summary["es_model_id"] == "tiny-org__bert-classifier"
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["inference_config"]["text_classification"]["classification_labels"] == ["ANT", "BEE", "CAT"]
    assert hub.requests[before:] == []
    assert f"note: --hub-model-id {CLASSIFIER}: a directory of that name exists here" in run.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--hub-model-id", "{missing}"), "is neither a hub repository id (ORG/NAME) nor an existing directory"),
    (("--hub-model-id", "./no/such/model"), "is neither a hub repository id (ORG/NAME) nor an existing directory"),
    (("--hub-model-id", "{classifier}", "--revision", "main"),
     "--revision applies to a hub repository, and --hub-model-id {classifier} is a local directory"),
    (("--hub-model-id", "{classifier}", "--model-dir", "{classifier}"), "give exactly one source"),
    (("--elastic-model", "elser_model_2", "--task-type", "auto"), "--task-type: not for --elastic-model"),
    (("--elastic-model", "elser_model_2", "--hub-access-token", WRONG), "--hub-access-token: not for --elastic-model"),
])
def test_conflicting_or_missing_sources_are_refused(args: tuple[str, ...], message: str, classifier: Path,
                                                    run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    paths = {"classifier": str(classifier), "missing": str(tmp_path / "nowhere" / "model")}
    out = tmp_path / "b"
    result = run_cli("export", "--signing-key", keys.pair.private_path, "--out", out,
                     *(a.format(**paths) for a in args))
    assert result.exit_code == 2, result.output
    assert message.format(**paths) in result.output
    assert WRONG not in result.output
    assert not out.exists()


# --task-type


def test_task_type_takes_eland_names_and_defaults_to_auto(run_cli: RunCli) -> None:
    for task in ELAND_TASK_TYPES:
        assert normalise_task_type(task) == task
        assert normalise_task_type(task.replace("_", "-")) == task
    assert normalise_task_type("auto") == "auto"
    result = run_cli("export", "--help")
    assert result.exit_code == 0
    assert "[default: auto]" in result.output


def test_elastic_model_is_not_refused_for_the_default_task_type(run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    """--task-type has a default now; only one given on the command line is refused with --elastic-model."""
    result = run_cli("export", "--signing-key", keys.pair.private_path, "--out", tmp_path / "b", "--elastic-model",
                     "elser_model_2", "--elastic-models-url", "http://127.0.0.1:9/")
    assert result.exit_code != 0
    assert "not for --elastic-model" not in result.output


# --hub-access-token, HUB_ACCESS_TOKEN


@pytest.mark.parametrize(("given", "expected"), [
    ((None, None, None), (None, None)),
    ((None, None, "hf-b"), ("hf-b", "HF_TOKEN")),
    ((None, "hub-a", "hf-b"), ("hub-a", "HUB_ACCESS_TOKEN")),
    (("flag-c", "hub-a", "hf-b"), ("flag-c", "--hub-access-token")),
    (("flag-c", None, None), ("flag-c", "--hub-access-token")),
    ((None, "", "hf-b"), ("hf-b", "HF_TOKEN")),  # an empty variable counts as unset
])
def test_token_precedence(given: tuple[str | None, str | None, str | None], expected: tuple[str | None, str | None],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    flag, hub_access_token, hf_token = given
    for name, value in ((settings.HUB_ACCESS_TOKEN, hub_access_token), (settings.HF_TOKEN, hf_token)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert settings.hub_token(flag) == expected


@pytest.mark.parametrize("how", ["flag", "HUB_ACCESS_TOKEN"])
def test_hub_token_reaches_the_hub_and_nothing_else(how: str, hub: HubServer, publisher: KeyPair,
                                                    tmp_path: Path) -> None:
    """The token opens the private repository; the lower-precedence variables hold a wrong one that must not be
    sent; no token appears in anything printed or in any file of the bundle."""
    args, env = (["--hub-access-token", TOKEN], {"HUB_ACCESS_TOKEN": WRONG, "HF_TOKEN": WRONG}) if how == "flag" \
        else ([], {"HUB_ACCESS_TOKEN": TOKEN, "HF_TOKEN": WRONG})
    before = len(hub.requests)
    out = tmp_path / "b"
    run = export(hub, tmp_path / "hf", publisher, out, "--hub-model-id", PRIVATE_NER, *args, env=env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["task_type"] == "ner"  # auto
    assert summary["source"]["commit_sha"] == hub.repos[PRIVATE_NER].sha
    sent = {auth for _, _, auth in hub.requests[before:]}
    assert sent == {f"Bearer {TOKEN}"}
    for token in (TOKEN, WRONG):
        assert token not in run.stdout + run.stderr
        assert not files_containing(out, token)


@pytest.mark.parametrize(("args", "env", "origin"), [
    (["--hub-access-token", WRONG], {}, "--hub-access-token"),
    ([], {"HUB_ACCESS_TOKEN": WRONG}, "HUB_ACCESS_TOKEN"),
    (["--hub-access-token", WRONG], {"HUB_ACCESS_TOKEN": TOKEN, "HF_TOKEN": TOKEN}, "--hub-access-token"),
])
def test_a_wrong_token_is_refused_without_echoing_it(args: list[str], env: dict[str, str], origin: str,
                                                     hub: HubServer, publisher: KeyPair, tmp_path: Path) -> None:
    before = len(hub.requests)
    out = tmp_path / "b"
    run = export(hub, tmp_path / "hf", publisher, out, "--hub-model-id", PRIVATE_NER, *args, env=env)
    assert run.returncode == 9, run.stderr
    assert f"hub model {PRIVATE_NER}: not found, or private and not readable with the token from {origin}" \
        in run.stderr
    assert "--hub-access-token, or HUB_ACCESS_TOKEN or HF_TOKEN" in run.stderr
    assert {auth for _, _, auth in hub.requests[before:]} == {f"Bearer {WRONG}"}  # it reached the hub
    for token in (TOKEN, WRONG):
        assert token not in run.stdout + run.stderr
    assert not out.exists()


# Proxies


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_hub_download_goes_through_the_proxy(variable: str, hub: HubServer, proxy: ProxyServer, publisher: KeyPair,
                                             tmp_path: Path) -> None:
    """Every request of the download is relayed by the proxy (the lower-case form with credentials in the URL,
    which reach the proxy and nothing printed)."""
    url = with_credentials(proxy.url) if variable.islower() else proxy.url
    before = len(hub.requests)
    run = export(hub, tmp_path / "hf", publisher, tmp_path / "b", "--hub-model-id", CLASSIFIER, env={variable: url})
    assert run.returncode == 0, run.stderr
    sha = hub.repos[CLASSIFIER].sha
    assert f"{hub.url}/api/models/{CLASSIFIER}/revision/main" in proxy.relayed
    assert f"{hub.url}/{CLASSIFIER}/resolve/{sha}/model.safetensors" in proxy.relayed
    made = hub.requests[before:]
    assert len(proxy.relayed) == len(made) > 0
    # huggingface_hub downloads files in parallel: the two logs agree as multisets, not in order.
    assert sorted(method for method, _, _ in made) == sorted(proxy.methods)
    if variable.islower():
        basic = "Basic " + base64.b64encode(f"esb-user:{PROXY_SECRET}".encode()).decode()
        assert set(proxy.proxy_authorization) == {basic}
    assert PROXY_SECRET not in run.stdout + run.stderr
    assert not files_containing(tmp_path / "b", PROXY_SECRET)


def test_no_proxy_bypasses_the_proxy(hub: HubServer, proxy: ProxyServer, publisher: KeyPair, tmp_path: Path) -> None:
    before = len(hub.requests)
    run = export(hub, tmp_path / "hf", publisher, tmp_path / "b", "--hub-model-id", CLASSIFIER,
                 env={"HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1"})
    assert run.returncode == 0, run.stderr
    assert proxy.relayed == []
    assert len(hub.requests) > before


def test_a_refusing_proxy_is_a_clear_error(hub: HubServer, publisher: KeyPair, tmp_path: Path) -> None:
    refusing = ProxyServer(refuse=True).start()
    try:
        before = len(hub.requests)
        out = tmp_path / "b"
        run = export(hub, tmp_path / "hf", publisher, out, "--hub-model-id", CLASSIFIER,
                     env={"HTTP_PROXY": with_credentials(refusing.url)})
    finally:
        refusing.stop()
    assert run.returncode == 9, run.stderr
    assert f"hub model {CLASSIFIER}: the hub could not be reached (" in run.stderr
    assert "502 Bad Gateway" in run.stderr and "behind a proxy set HTTPS_PROXY" in run.stderr
    assert PROXY_SECRET not in run.stdout + run.stderr
    assert refusing.relayed and hub.requests[before:] == []
    assert not out.exists()


def test_proxy_credentials_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://esb-user:p%40ss-w0rd@proxy.internal:3128")
    settings.register_proxy_secrets()
    assert settings.scrub("proxy p%40ss-w0rd / p@ss-w0rd") == "proxy *** / ***"



def test_the_hub_token_travels_in_the_export_options_but_never_in_their_text(tmp_path: Path) -> None:
    """The token rides with the rest of the export's options (no process-wide state), and printing the options, as
    a debugger or a log line would, never shows it."""
    options = ExportOptions(signing_key=tmp_path / "k", out=tmp_path / "o", hub_model_id="org/private",
                            hub_access_token="hf_tokenInTheOptions123")
    assert options.hub_access_token == "hf_tokenInTheOptions123"
    assert "hf_tokenInTheOptions123" not in repr(options) and "hf_tokenInTheOptions123" not in str(options)
