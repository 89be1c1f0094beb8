"""The stand-in installs packaged models (ids starting with `.`) from a model repository as Elasticsearch does.

Every expectation is written from /work/shared/reference/elastic-model-repository.md and the Elasticsearch sources
it names (MachineLearningPackageLoader, ModelLoaderUtils, ModelImporter, TransportGetTrainedModelPackageConfigAction,
TrainedModelValidator, TrainedModelConfig.Builder.validateNoPackageOverrides, MlPlatformArchitecturesUtil); no
expectation is computed by the stand-in's helpers. Packages are made here: a tiny TorchScript module, its vocabulary
and metadata in Elastic's shape, under the stand-in's config directory (file route) or served by a local HTTP server
that honours and logs Range requests (tests/repository_server.py).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.repository_server import RepositoryServer
from tests.standin.fixture import RawResponse, StandIn, failed_start, start_standin, wait_until
from tests.standin.testkit import VOCAB, scripted

MIB = 1024 * 1024
BODY = {"input": {"field_names": ["text_field"]}}
INFERENCE = {"text_embedding": {"tokenization": {"bert": {"do_lower_case": True, "max_sequence_length": 16}}}}
LINK = "https://www.elastic.co/guide/en/machine-learning/9.2/ml-nlp-elser.html#air-gapped-install"


def write_package(directory: Path, name: str, definition: bytes, **changes: Any) -> dict[str, Any]:
    """`<name>.metadata.json`, `<name>.pt` and `<name>.vocab.json` as Elastic publishes them."""
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"packaged_model_id": name, "description": "a tiny test package", "minimum_version": "11.0.0",
                "create_time": "2024-01-01T00:00:00.000Z", "size": len(definition),
                "sha256": hashlib.sha256(definition).hexdigest(), "inference_config": INFERENCE,
                "metadata": {}, "model_type": "pytorch", "tags": [], "vocabulary_file": f"{name}.vocab.json",
                **changes}
    (directory / f"{name}.metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    (directory / f"{name}.pt").write_bytes(definition)
    (directory / f"{name}.vocab.json").write_text(json.dumps({"vocabulary": VOCAB}), encoding="utf-8")
    return metadata


def put(server: StandIn, model_id: str, body: dict[str, Any] | None = None, wait: bool = True) -> RawResponse:
    query = "?wait_for_completion=true" if wait else ""
    return server.http("PUT", f"/_ml/trained_models/{model_id}{query}", body=body or BODY, timeout=120)


def error(response: RawResponse) -> tuple[int, str, str]:
    found = response.json()["error"]
    return response.status, found["type"], found["reason"]


def fully_defined(server: StandIn, model_id: str) -> bool:
    answer = server.http("GET", f"/_ml/trained_models/{model_id}?include=definition_status").json()
    return bool(answer["trained_model_configs"][0]["fully_defined"])


def read_back(server: StandIn, model_id: str) -> bytes:
    response = server.http("GET", f"/_standin/trained_models/{model_id}/definition")
    assert response.status == 200, response.body[:300]
    return response.body


def start_and_infer(server: StandIn, model_id: str) -> None:
    client = server.client()
    started = client.ml.start_trained_model_deployment(model_id=model_id, wait_for="started")
    assert started["assignment"]["assignment_state"] == "started"
    result = client.ml.infer_trained_model(model_id=model_id, docs=[{"text_field": "hello world"}])
    (embedding,) = result["inference_results"]
    assert len(embedding["predicted_value"]) == 8  # scripted("embedding") answers [1, 8]


@pytest.fixture(scope="module")
def definition() -> bytes:
    return scripted("embedding", padding=2 * MIB + MIB // 2)  # three 1 MiB parts


@pytest.fixture(scope="module")
def big_definition() -> bytes:
    padded = scripted("embedding", padding=6 * MIB + MIB // 2)
    assert 6 * MIB < len(padded) <= 7 * MIB  # seven chunks: the expected ranges below depend on it
    return padded


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory, definition: bytes) -> Iterator[StandIn]:
    root = tmp_path_factory.mktemp("file-repo")
    models = root / "config" / "models"
    write_package(models, "tiny-e5", definition)
    write_package(models, "wrong-name", definition, packaged_model_id="other-name")
    write_package(models, "size-zero", definition, size=0)
    write_package(models, "short-sha", definition, sha256="a" * 63)
    write_package(models, "no-minimum", definition, minimum_version=None)
    write_package(models, "too-new", definition, minimum_version="99.0.0")
    write_package(models, "bad-sha", definition, sha256="0" * 64)
    write_package(models, "overridden", definition)
    server = start_standin(root / "data", config_dir=root / "config", model_repository=models.as_uri() + "/")
    yield server
    server.kill()


# --- the setting's bootstrap check ---------------------------------------------------------------------------

@pytest.mark.parametrize(("repository", "reason"), [
    ("/some/where", 'xpack.ml.model_repository must contain a scheme, supported schemes are "http", "https", "file"'),
    ("ftp://127.0.0.1/models", 'xpack.ml.model_repository must be configured with one of the following schemes: '
                               '"http", "https", "file"'),
    ("http://user:secret@127.0.0.1:9/models", "xpack.ml.model_repository does not support authentication"),
])
def test_a_bad_repository_setting_stops_the_node(tmp_path: Path, repository: str, reason: str) -> None:
    failed = failed_start(tmp_path / "data", model_repository=repository)
    assert failed.status != 0
    assert (f"Found an invalid configuration for xpack.ml.model_repository. {reason}. See {LINK} for more "
            "information.") in failed.stderr


def test_a_file_repository_must_be_below_the_config_directory(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    failed = failed_start(tmp_path / "data", config_dir=config_dir, model_repository=(tmp_path / "models").as_uri())
    assert failed.status != 0
    # Path.toUri of the existing config directory, with its trailing slash.
    config_uri = f"file://{config_dir.resolve()}/"
    assert ("Found an invalid configuration for xpack.ml.model_repository. If xpack.ml.model_repository is a file "
            f"location, it must be placed below the configuration: {config_uri}. See {LINK} for more information."
            ) in failed.stderr


def test_a_repository_below_the_config_directory_starts(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    server = start_standin(tmp_path / "data", config_dir=config_dir,
                           model_repository=f"file://{config_dir.resolve()}/models/../models")
    server.kill()


# --- the file route ------------------------------------------------------------------------------------------

def test_the_file_route_imports_a_package_end_to_end(file_server: StandIn, definition: bytes) -> None:
    stored = put(file_server, ".tiny-e5")
    assert stored.status == 200, stored.body[:500]
    config = stored.json()
    assert (config["model_id"], config["model_type"], config["description"]) == (
        ".tiny-e5", "pytorch", "a tiny test package")
    assert config["inference_config"]["text_embedding"]["tokenization"]["bert"]["max_sequence_length"] == 16
    package = config["model_package"]
    assert (package["packaged_model_id"], package["size"], package["sha256"], package["vocabulary_file"]) == (
        "tiny-e5", len(definition), hashlib.sha256(definition).hexdigest(), "tiny-e5.vocab.json")
    assert package["model_repository"].startswith("file:")
    assert read_back(file_server, ".tiny-e5") == definition
    assert fully_defined(file_server, ".tiny-e5")
    stats = file_server.http("GET", "/_standin/trained_models/.tiny-e5/stats").json()
    assert stats["stored_order"] == [0, 1, 2]  # 1 MiB parts, read sequentially, the last part last
    start_and_infer(file_server, ".tiny-e5")


def test_the_file_route_checks_the_sha256_after_storing_every_part(file_server: StandIn, definition: bytes) -> None:
    refused = put(file_server, ".bad-sha")
    actual = hashlib.sha256(definition).hexdigest()
    assert error(refused) == (500, "status_exception", f"Model sha256 checksums do not match, expected [{'0' * 64}] "
                                                        f"but got [{actual}]")
    stats = file_server.http("GET", "/_standin/trained_models/.bad-sha/stats").json()
    assert stats["parts_stored"] == 3  # the bad package leaves a complete-looking definition behind


@pytest.mark.parametrize(("model_id", "expected"), [
    (".wrong-name", (500, "status_exception", "Invalid package name")),
    (".size-zero", (500, "status_exception", "Invalid package size")),
    (".short-sha", (500, "status_exception", "Invalid package sha")),
    (".no-minimum", (400, "action_request_validation_exception", "Validation Failed: 1: Invalid model package "
                                                                 "configuration for [no-minimum], missing "
                                                                 "minimum_version property;")),
    (".too-new", (400, "action_request_validation_exception", "Validation Failed: 1: The model [too-new] requires "
                                                              "that all nodes are at least version [99.0.0];")),
])
def test_package_metadata_refusals(file_server: StandIn, model_id: str, expected: tuple[int, str, str]) -> None:
    refused = put(file_server, model_id)
    assert error(refused) == expected
    assert file_server.http("GET", f"/_ml/trained_models/{model_id}").status == 404


def test_a_missing_package_is_not_found(file_server: StandIn) -> None:
    refused = put(file_server, ".missing")
    assert error(refused) == (400, "illegal_argument_exception", "Failed to find package")
    cause = refused.json()["error"]["caused_by"]
    assert cause["type"] == "resource_not_found_exception"
    assert cause["reason"].startswith("file:/") and cause["reason"].endswith("/config/models/missing.metadata.json "
                                                                             "not found")


def test_a_packaged_model_takes_nothing_the_package_defines(file_server: StandIn) -> None:
    body = {**BODY, "description": "mine", "model_type": "pytorch", "metadata": {"a": 1}, "tags": ["mine"],
            "inference_config": {"pass_through": {}}}
    refused = put(file_server, ".overridden", body)
    texts = [f"illegal to set [{f}] at inference model creation for packaged model"
             for f in ("description", "model_type", "metadata", "inference_config", "tags")]
    assert error(refused) == (400, "action_request_validation_exception",
                              "Validation Failed: " + "".join(f"{i}: {t};" for i, t in enumerate(texts, start=1)))


def test_the_packaged_id_is_validated_without_its_dot(file_server: StandIn) -> None:
    assert put(file_server, ".Bad-Name").status == 400
    refused = put(file_server, ".tiny-e5_SNAPSHOT")  # a valid id: the package `tiny-e5_SNAPSHOT` is fetched
    assert error(refused) == (400, "illegal_argument_exception", "Failed to find package")


# --- the HTTP route ------------------------------------------------------------------------------------------

@pytest.fixture
def http_repository(tmp_path: Path) -> Iterator[RepositoryServer]:
    served = RepositoryServer(tmp_path / "served").start()
    yield served
    served.stop()


def test_the_http_route_downloads_five_ranges_then_the_last_chunk(tmp_path: Path, big_definition: bytes,
                                                                  http_repository: RepositoryServer) -> None:
    write_package(http_repository.root, "big-e5", big_definition)
    http_repository.hold_bodies = 6  # bodies only once every range's connection is open
    server = start_standin(tmp_path / "data", model_repository=http_repository.url)
    stored = put(server, ".big-e5")
    assert stored.status == 200, stored.body[:500]
    size = len(big_definition)
    # split(size, 5, 1 MiB) for seven chunks: 2+1+1+1+1 chunks, then the final chunk on its own.
    assert http_repository.ranges("/big-e5.pt") == [
        f"bytes=0-{2 * MIB - 1}", f"bytes={2 * MIB}-{3 * MIB - 1}", f"bytes={3 * MIB}-{4 * MIB - 1}",
        f"bytes={4 * MIB}-{5 * MIB - 1}", f"bytes={5 * MIB}-{6 * MIB - 1}", f"bytes={6 * MIB}-{size - 1}"]
    assert http_repository.ranges("/big-e5.metadata.json") == [None]  # a plain GET
    assert read_back(server, ".big-e5") == big_definition
    stats = server.http("GET", "/_standin/trained_models/.big-e5/stats").json()
    assert sorted(stats["stored_order"]) == list(range(7)) and stats["stored_order"][-1] == 6
    start_and_infer(server, ".big-e5")
    server.kill()


def test_the_http_route_checks_the_size_only(tmp_path: Path, big_definition: bytes,
                                            http_repository: RepositoryServer) -> None:
    write_package(http_repository.root, "changed", big_definition)
    changed = bytearray(big_definition)
    changed[3 * MIB] ^= 0xFF  # same size, another sha256
    (http_repository.root / "changed.pt").write_bytes(bytes(changed))
    server = start_standin(tmp_path / "data", model_repository=http_repository.url)
    stored = put(server, ".changed")
    assert stored.status == 200, stored.body[:500]
    assert read_back(server, ".changed") == bytes(changed)
    server.kill()


def test_without_waiting_the_put_answers_before_the_import(tmp_path: Path, big_definition: bytes,
                                                          http_repository: RepositoryServer) -> None:
    write_package(http_repository.root, "later", big_definition)
    http_repository.gate = threading.Event()
    server = start_standin(tmp_path / "data", model_repository=http_repository.url)
    stored = put(server, ".later", wait=False)
    assert stored.status == 200 and stored.json()["model_id"] == ".later"
    assert not fully_defined(server, ".later")  # the download is held
    http_repository.gate.set()
    wait_until(lambda: fully_defined(server, ".later"), "the background import")
    assert read_back(server, ".later") == big_definition
    server.kill()


def test_http_refusals(tmp_path: Path, definition: bytes, http_repository: RepositoryServer) -> None:
    write_package(http_repository.root, "moved", definition)
    http_repository.statuses["/moved.pt"] = 302
    server = start_standin(tmp_path / "data", model_repository=http_repository.url)
    missing = put(server, ".absent")
    assert error(missing) == (400, "illegal_argument_exception", "Failed to find package")
    assert missing.json()["error"]["caused_by"]["reason"] == f"{http_repository.url}/absent.metadata.json not found"
    moved = put(server, ".moved")
    assert error(moved) == (500, "status_exception",
                            "Model importing failed due to an Exception [java.lang.IllegalStateException: redirects "
                            "aren't supported yet]")
    server.kill()


# --- platform-specific packages ------------------------------------------------------------------------------

def test_a_package_for_another_platform_warns_then_fails_to_start(tmp_path: Path, definition: bytes) -> None:
    models = tmp_path / "config" / "models"
    write_package(models, "tiny_linux-x86_64", definition, platform_architecture="linux-x86_64")
    server = start_standin(tmp_path / "data", config_dir=tmp_path / "config", model_repository=models.as_uri(),
                           ml_platform="darwin-aarch64")
    message = ("The model being deployed ([.tiny_linux-x86_64]) is platform specific and incompatible with ML nodes "
               "in the cluster; expected [linux-x86_64]; but was [darwin-aarch64]")
    stored = put(server, ".tiny_linux-x86_64")
    assert stored.status == 200 and message in stored.headers.get("Warning", "")
    refused = server.http("POST", "/_ml/trained_models/.tiny_linux-x86_64/deployment/_start")
    assert refused.status == 500 and message in refused.json()["error"]["reason"]
    server.kill()


# --- what the cluster says about its repository and its ML nodes ---------------------------------------------

def test_the_repository_setting_shows_under_defaults_with_its_yml_value(file_server: StandIn) -> None:
    """RestClusterGetSettingsAction: `defaults` is ClusterSettings.diff(cluster settings, node settings), so a node
    setting set in elasticsearch.yml shows there with the yml's value (Setting.getRaw); nothing was set persistent or
    transient; `flat_settings` (Settings.FORMAT_PARAMS) keeps dotted keys, without it they nest."""
    repository = file_server.options["model_repository"]
    flat = file_server.http("GET", "/_cluster/settings?include_defaults=true&flat_settings=true")
    assert flat.status == 200, flat.body[:300]
    body = flat.json()
    assert (body["persistent"], body["transient"]) == ({}, {})
    assert body["defaults"]["xpack.ml.model_repository"] == repository
    nested = file_server.http("GET", "/_cluster/settings?include_defaults=true").json()
    assert nested["defaults"]["xpack"]["ml"]["model_repository"] == repository
    # Without include_defaults the (empty) defaults are left out (RestClusterGetSettingsResponse.toXContent).
    assert file_server.http("GET", "/_cluster/settings").json() == {"persistent": {}, "transient": {}}


@pytest.mark.parametrize(("platform", "os_name", "os_arch"), [
    ("linux-x86_64", "Linux", "amd64"),  # the JVM's os.arch on x86-64; Platforms.platformName maps amd64 to x86_64
    ("linux-aarch64", "Linux", "aarch64"),
])
def test_without_the_setting_the_default_shows_and_nodes_report_their_os(tmp_path: Path, platform: str, os_name: str,
                                                                         os_arch: str) -> None:
    server = start_standin(tmp_path / "data", ml_platform=platform)
    settings = server.http("GET", "/_cluster/settings?include_defaults=true&flat_settings=true").json()
    assert settings["defaults"]["xpack.ml.model_repository"] == "https://ml-models.elastic.co"
    (node,) = server.http("GET", "/_nodes").json()["nodes"].values()
    assert "ml" in node["roles"]
    assert (node["os"]["name"], node["os"]["arch"]) == (os_name, os_arch)  # OsInfo.toXContent
    server.kill()
