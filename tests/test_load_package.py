"""`esbundle load` of one of Elastic's packages: the cluster imports it from its model repository (file route here),
the load proves it holds exactly the bundle's package, then starts it and runs the smoke test.

Packages are made here (tests/packages.py: a tiny BERT traced to `.pt`, its vocabulary, metadata in Elastic's shape),
exported from a local model server, and their files copied into the stand-in's repository below its config
directory. Expectations come from those files and from the Hugging Face model run directly, never from what the
export recorded or the loader printed.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from bundler.elastic.export import PackageExportOptions, run_package_export
from bundler.keys import generate_keypair
from tests.conftest import RunCli
from tests.packages import MadePackage, make_package, reference_embeddings
from tests.repository_server import RepositoryServer
from tests.standin.fixture import StandIn

PADDING = 2 << 20  # three 1 MiB parts on the cluster's side
INTEGRITY, POLICY = 4, 6
TEXT = "the quick brown fox"


@dataclass(frozen=True)
class Exported:
    package: MadePackage
    bundle: Path
    pub: Path


def export(package: MadePackage, private_key: Path, out: Path) -> Path:
    served = RepositoryServer(package.directory).start()
    try:
        run_package_export(PackageExportOptions(name=package.name, models_url=served.url, signing_key=private_key,
                                                out=out, expires_in_days=None))
    finally:
        served.stop()
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Exported]:
    """Make a package (the tiny BERT is built once and shared) and export it to a signed bundle."""
    root = tmp_path_factory.mktemp("packages")
    pair = generate_keypair(root / "keys", "publisher")
    models: list[Path] = []

    def make(name: str, label: str, padding: int = PADDING, **changes: Any) -> Exported:
        package = make_package(root / label / "models", name, padding=padding,
                               model_dir=models[0] if models else None, **changes)
        models.append(package.model_dir)
        return Exported(package, export(package, pair.private_path, root / label / "bundle"), pair.public_path)

    return make


@pytest.fixture(scope="module")
def portable(made: Callable[..., Exported]) -> Exported:
    return made("tiny-e5", "portable")


@pytest.fixture(scope="module")
def optimised(made: Callable[..., Exported], portable: Exported) -> Exported:
    return made("tiny-e5_linux-x86_64", "optimised", platform_architecture="linux-x86_64")


@pytest.fixture(scope="module")
def impostor(made: Callable[..., Exported], portable: Exported) -> MadePackage:
    """Another `.pt` under the same name, its metadata consistent with it (the cluster's own checks pass)."""
    other = made("tiny-e5", "impostor", padding=PADDING + 1).package
    assert other.pt.read_bytes() != portable.package.pt.read_bytes()
    return other


@pytest.fixture
def cluster(tmp_path: Path, standin: Callable[..., StandIn]) -> Callable[..., StandIn]:
    """A stand-in whose model repository (below its config directory) holds the given package's files."""
    def start(*packages: MadePackage, repository: bool = True, **options: Any) -> StandIn:
        config = tmp_path / "config"
        models = config / "models"
        models.mkdir(parents=True, exist_ok=True)
        for package in packages:
            for path in (package.metadata_file, package.pt, package.vocabulary_file):
                shutil.copyfile(path, models / path.name)
        if repository:
            options["model_repository"] = models.as_uri() + "/"
        return standin(data_dir=tmp_path / "data", config_dir=config, **options)

    return start


def load(run_cli: RunCli, exported: Exported, server: StandIn, *extra: Any) -> Any:
    return run_cli("load", exported.bundle, "--trusted-key", exported.pub, "--url", server.url, *extra)


def held(server: StandIn, model_id: str) -> dict[str, Any] | None:
    response = server.http("GET", f"/_ml/trained_models/{model_id}?include=definition_status")
    if response.status == 404:
        return None
    assert response.status == 200, response.body[:300]
    return dict(response.json()["trained_model_configs"][0])


def stored_parts(server: StandIn, model_id: str) -> dict[str, int]:
    return dict(server.http("GET", f"/_standin/trained_models/{model_id}/stats").json()["stored"])


def receipts(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "receipts.jsonl").read_text().splitlines()]


# --- loaded ------------------------------------------------------------------------------------------------------

def test_a_package_is_imported_started_and_answers_like_the_hugging_face_model(
        portable: Exported, cluster: Callable[..., StandIn], run_cli: RunCli, tmp_path: Path) -> None:
    server = cluster(portable.package)
    result = load(run_cli, portable, server, "--start")
    assert result.exit_code == 0, result.output
    assert "LOADED   [.tiny-e5]" in result.stdout
    assert "ok    cluster  repository xpack.ml.model_repository = file://" in result.stdout
    assert "ok    cluster  platform   portable package" in result.stdout
    assert "ok    upload   import" in result.stdout
    # The stand-in, not the loader, says what it holds: the .pt byte for byte, fully defined.
    back = server.http("GET", "/_standin/trained_models/.tiny-e5/definition")
    assert back.status == 200 and back.body == portable.package.pt.read_bytes()
    config = held(server, ".tiny-e5")
    assert config is not None and config["fully_defined"] is True
    assert config["model_package"]["sha256"] == portable.package.metadata["sha256"]
    smoke = [line for line in result.stdout.splitlines() if " smoke " in line]
    assert len(smoke) == 3 and all(line.startswith("ok ") for line in smoke), result.stdout
    # An independent reference: the Hugging Face model run directly, with its own tokenizer.
    answer = server.client().ml.infer_trained_model(model_id=".tiny-e5", docs=[{"text_field": TEXT}])
    got = torch.tensor(answer["inference_results"][0]["predicted_value"])
    want = reference_embeddings(portable.package, [TEXT])[0]
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    (receipt,) = receipts(tmp_path)
    assert receipt["outcome"] == "loaded" and receipt["parts_sent"] == 0
    assert receipt["package"]["sha256"] == portable.package.metadata["sha256"]
    assert receipt["package"]["model_repository"].startswith("file://")


def test_a_rerun_finds_the_package_loaded_and_sends_nothing(portable: Exported, cluster: Callable[..., StandIn],
                                                            run_cli: RunCli, tmp_path: Path) -> None:
    server = cluster(portable.package)
    assert load(run_cli, portable, server).exit_code == 0
    before = stored_parts(server, ".tiny-e5")
    again = load(run_cli, portable, server, "--json")
    assert again.exit_code == 0, again.output
    receipt = json.loads(again.stdout)
    assert receipt["outcome"] == "already-loaded" and receipt["action"] == "already-loaded"
    assert stored_parts(server, ".tiny-e5") == before  # no part stored again: no import ran


def test_dry_run_says_what_the_cluster_would_do_and_writes_nothing(portable: Exported, cluster: Callable[..., StandIn],
                                                                  run_cli: RunCli) -> None:
    server = cluster(portable.package)
    result = load(run_cli, portable, server, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "DRY RUN  would have the cluster import [.tiny-e5] from its model repository (file://" in result.stdout
    assert held(server, ".tiny-e5") is None


def test_an_inference_endpoint_serves_the_package(portable: Exported, cluster: Callable[..., StandIn],
                                                  run_cli: RunCli) -> None:
    server = cluster(portable.package)
    result = load(run_cli, portable, server, "--inference-id", "tiny-e5-endpoint")
    assert result.exit_code == 0, result.output
    endpoint = server.client().inference.get(inference_id="tiny-e5-endpoint")["endpoints"][0]
    assert (endpoint["task_type"], endpoint["service_settings"]["model_id"]) == ("text_embedding", ".tiny-e5")
    answer = server.client().inference.inference(task_type="text_embedding", inference_id="tiny-e5-endpoint",
                                                 input=[TEXT])
    got = torch.tensor(answer["text_embedding"][0]["embedding"])
    assert torch.allclose(got, reference_embeddings(portable.package, [TEXT])[0], atol=1e-4)


def test_a_package_without_samples_loads_with_a_note(made: Callable[..., Exported], portable: Exported,
                                                    cluster: Callable[..., StandIn], run_cli: RunCli) -> None:
    """A tokenization esbundle does not rebuild (mpnet here) is exported without samples; the load says so."""
    tokenization = {"mpnet": {"do_lower_case": True, "with_special_tokens": True, "max_sequence_length": 64}}
    unsampled = made("tiny-mpnet", "mpnet", inference_config={"text_embedding": {"tokenization": tokenization}})
    server = cluster(unsampled.package)
    result = load(run_cli, unsampled, server)
    assert result.exit_code == 0, result.output
    assert ("note  the bundle has no samples (recorded without torch, or for a tokenization esbundle does not "
            "rebuild): the smoke test cannot prove the cluster's answers") in result.stdout
    assert held(server, ".tiny-mpnet") is not None


# --- refused before anything is sent -----------------------------------------------------------------------------

def test_a_cluster_older_than_the_package_is_refused(portable: Exported, cluster: Callable[..., StandIn],
                                                     run_cli: RunCli, tmp_path: Path) -> None:
    server = cluster(portable.package, es_version="8.11.4")
    result = load(run_cli, portable, server)
    assert result.exit_code == POLICY, result.output
    assert ("the package tiny-e5 needs Elasticsearch 8.12.0 or later (its minimum_version is 12.0.0" in result.stderr)
    assert "the cluster runs 8.11.4" in result.stderr
    assert held(server, ".tiny-e5") is None
    assert receipts(tmp_path)[-1]["outcome"] == "refused"


def test_the_optimised_variant_is_refused_on_an_arm_ml_node(optimised: Exported, cluster: Callable[..., StandIn],
                                                            run_cli: RunCli) -> None:
    server = cluster(optimised.package, ml_platform="linux-aarch64")
    result = load(run_cli, optimised, server)
    assert result.exit_code == POLICY, result.output
    assert ("The model being deployed ([.tiny-e5_linux-x86_64]) is platform specific and incompatible with ML nodes "
            "in the cluster; expected [linux-x86_64]; but was [linux-aarch64]") in result.stderr
    assert "esbundle export --elastic-model tiny-e5" in result.stderr
    assert held(server, ".tiny-e5_linux-x86_64") is None


def test_forced_past_the_platform_the_import_carries_the_clusters_warning(
        optimised: Exported, cluster: Callable[..., StandIn], run_cli: RunCli) -> None:
    server = cluster(optimised.package, ml_platform="linux-aarch64")
    result = load(run_cli, optimised, server, "--force")
    assert result.exit_code == 0, result.output
    text = ("The model being deployed ([.tiny-e5_linux-x86_64]) is platform specific and incompatible with ML nodes "
            "in the cluster; expected [linux-x86_64]; but was [linux-aarch64]")
    assert f"note  forced past: {text}" in result.stdout
    assert f"note  the cluster warned: {text}" in result.stdout  # the PUT's Warning header, as Elasticsearch adds it
    assert held(server, ".tiny-e5_linux-x86_64") is not None


def test_the_optimised_variant_loads_on_x86_ml_nodes(optimised: Exported, cluster: Callable[..., StandIn],
                                                     run_cli: RunCli) -> None:
    server = cluster(optimised.package, ml_platform="linux-x86_64")
    result = load(run_cli, optimised, server, "--start")
    assert result.exit_code == 0, result.output
    assert "package for linux-x86_64; ML nodes [linux-x86_64]" in result.stdout
    back = server.http("GET", "/_standin/trained_models/.tiny-e5_linux-x86_64/definition").body
    assert back == optimised.package.pt.read_bytes()


def test_a_cluster_without_a_model_repository_is_refused(portable: Exported, cluster: Callable[..., StandIn],
                                                         run_cli: RunCli) -> None:
    server = cluster(portable.package, repository=False)
    result = load(run_cli, portable, server)
    assert result.exit_code == POLICY, result.output
    assert "xpack.ml.model_repository is https://ml-models.elastic.co" in result.stderr
    assert "Elastic's model server on the internet" in result.stderr
    assert "esbundle repository install BUNDLE --to DIR" in result.stderr
    assert "esbundle repository serve BUNDLE" in result.stderr
    assert held(server, ".tiny-e5") is None


def test_another_id_is_refused(portable: Exported, cluster: Callable[..., StandIn], run_cli: RunCli) -> None:
    server = cluster(portable.package)
    result = load(run_cli, portable, server, "--es-model-id", "my-e5")
    assert result.exit_code == 2, result.output
    assert "installs only under its own id [.tiny-e5]" in result.stderr
    assert held(server, "my-e5") is None and held(server, ".tiny-e5") is None


# --- the repository holds another package ------------------------------------------------------------------------

def test_a_repository_holding_another_pt_is_reported_after_the_import(
        portable: Exported, impostor: MadePackage, cluster: Callable[..., StandIn], run_cli: RunCli,
        tmp_path: Path) -> None:
    server = cluster(impostor)
    result = load(run_cli, portable, server, "--start")
    assert result.exit_code == INTEGRITY, result.output
    assert "LOADED" not in result.stdout and " smoke " not in result.stdout
    assert f"model_package.sha256 is {impostor.metadata['sha256']}" in result.stderr
    assert f"the bundle's is {portable.package.metadata['sha256']}" in result.stderr
    assert "--replace" in result.stderr
    assert receipts(tmp_path)[-1]["outcome"] == "failed"
    # A rerun does not take the wrong package for this one.
    again = load(run_cli, portable, server)
    assert again.exit_code == POLICY, again.output
    assert "[.tiny-e5] is in the cluster and is not this bundle's package" in again.stderr


def test_replace_deletes_the_wrong_package_and_imports_again(portable: Exported, impostor: MadePackage,
                                                             cluster: Callable[..., StandIn], run_cli: RunCli,
                                                             tmp_path: Path) -> None:
    server = cluster(impostor)
    assert load(run_cli, portable, server).exit_code == INTEGRITY
    models = tmp_path / "config" / "models"
    for path in (portable.package.metadata_file, portable.package.pt, portable.package.vocabulary_file):
        shutil.copyfile(path, models / path.name)  # the operator puts the right files in place
    result = load(run_cli, portable, server, "--replace", "--start")
    assert result.exit_code == 0, result.output
    back = server.http("GET", "/_standin/trained_models/.tiny-e5/definition").body
    assert back == portable.package.pt.read_bytes()


def test_a_missing_package_fails_with_the_clusters_words(portable: Exported, cluster: Callable[..., StandIn],
                                                         run_cli: RunCli) -> None:
    server = cluster()  # a repository, but without this package's files
    result = load(run_cli, portable, server)
    assert result.exit_code == 7, result.output
    assert "illegal_argument_exception: Failed to find package" in result.stderr
    assert "tiny-e5.metadata.json not found" in result.stderr
    assert "nothing was created in the cluster" in result.stderr
    assert "esbundle repository install" in result.stderr
    assert held(server, ".tiny-e5") is None


def test_a_failed_import_says_what_is_left_and_how_to_recover(portable: Exported, cluster: Callable[..., StandIn],
                                                              run_cli: RunCli, tmp_path: Path) -> None:
    server = cluster(portable.package)
    models = tmp_path / "config" / "models"
    pt = bytearray((models / "tiny-e5.pt").read_bytes())
    pt[len(pt) // 2] ^= 0xFF  # same size, another sha256: the file route checks it after storing every part
    (models / "tiny-e5.pt").write_bytes(bytes(pt))
    result = load(run_cli, portable, server, "--start")
    assert result.exit_code == 7, result.output
    assert "500 status_exception: Model sha256 checksums do not match" in result.stderr
    assert "[.tiny-e5] is left in the cluster, incomplete or wrong: do not use it" in result.stderr
    assert "DELETE _ml/trained_models/.tiny-e5" in result.stderr and "--replace" in result.stderr
    assert "LOADED" not in result.stdout
