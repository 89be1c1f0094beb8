"""The hub path for real: `esbundle export --hub-model-id` in a subprocess, with `huggingface_hub` downloading from
a hub server on 127.0.0.1 (HF_ENDPOINT) into a temporary HF_HOME. The resolved commit lands in the signed
provenance; a private repository needs HF_TOKEN; the cache serves HF_HUB_OFFLINE; an unsupported tokenizer is
refused before any weight is downloaded. Nothing leaves the machine.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch  # noqa: F401  (declared in [export]: missing is an error, not a skip)

from bundler.keys import KeyPair, generate_keypair
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.format.manifest import Manifest
from tests import models
from tests.hub_export import TOKEN, export, files_containing, shared_repos
from tests.hub_server import HubServer, Repo


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    root = tmp_path_factory.mktemp("hub-models")
    server = HubServer()
    for repo in shared_repos(root):
        server.add(repo)
    server.add(Repo.from_folder("tiny-org/gpt2-tokenizer", models.unsupported_tokenizer(root / "gpt2")))
    server.add(Repo.from_folder("tiny-org/legacy-weights", models.with_legacy_weights(
        models.bert(root / "legacy", labels=["NO", "YES"], seed=12))))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-home")


def test_hub_download_records_the_commit(hub: HubServer, hf_home: Path, publisher: KeyPair, tmp_path: Path) -> None:
    repo = hub.repos["tiny-org/bert-classifier"]
    run = export(hub, hf_home, publisher, tmp_path / "b", "--hub-model-id", repo.repo_id, "--task-type", "auto")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["es_model_id"] == "tiny-org__bert-classifier"
    assert summary["source"] == {"kind": "hub", "hub_model_id": repo.repo_id, "revision": "main",
                                 "commit_sha": repo.sha}
    assert set(summary["stages"]) == {"resolve", "load", "trace", "check", "write"}
    verified = verify_bundle(tmp_path / "b", load_trusted_keys([publisher.public_path]), progress=False)
    provenance = verified.manifest.provenance
    assert provenance["source"]["commit_sha"] == repo.sha
    import hashlib

    assert provenance["files"] == {name: hashlib.sha256(data).hexdigest() for name, data in repo.files.items()}
    fetched = {path for method, path, _ in hub.requests if "/resolve/" in path}
    assert f"/{repo.repo_id}/resolve/{repo.sha}/model.safetensors" in fetched
    for label in ("[1/5] resolve", "[5/5] write: done in"):
        assert label in run.stderr


def test_offline_mode_uses_the_cache(hub: HubServer, hf_home: Path, publisher: KeyPair, tmp_path: Path) -> None:
    repo = hub.repos["tiny-org/bert-classifier"]
    first = export(hub, hf_home, publisher, tmp_path / "online", "--hub-model-id", repo.repo_id, "--task-type", "auto")
    assert first.returncode == 0, first.stderr
    before = len(hub.requests)
    run = export(hub, hf_home, publisher, tmp_path / "offline", "--hub-model-id", repo.repo_id, "--task-type",
                 "auto", env={"HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr
    assert len(hub.requests) == before, "offline mode must not reach the hub"
    assert json.loads(run.stdout)["source"]["commit_sha"] == repo.sha


def test_private_repository_needs_the_token(hub: HubServer, hf_home: Path, publisher: KeyPair,
                                            tmp_path: Path) -> None:
    repo = hub.repos["tiny-org/private-ner"]
    denied = export(hub, hf_home, publisher, tmp_path / "denied", "--hub-model-id", repo.repo_id, "--task-type", "ner")
    assert denied.returncode == 9
    assert "tiny-org/private-ner" in denied.stderr and "HF_TOKEN" in denied.stderr
    assert not (tmp_path / "denied").exists()
    allowed = export(hub, hf_home, publisher, tmp_path / "allowed", "--hub-model-id", repo.repo_id, "--task-type",
                     "ner", "--revision", repo.sha, env={"HF_TOKEN": TOKEN})
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["source"]["commit_sha"] == repo.sha
    assert any(auth == f"Bearer {TOKEN}" for _, path, auth in hub.requests if repo.repo_id in path)
    manifest = Manifest.from_bytes((tmp_path / "allowed" / "manifest.json").read_bytes())
    assert manifest.provenance["source"]["revision"] == repo.sha
    # The token opens the repository; it never lands in the bundle or in anything printed.
    assert TOKEN not in allowed.stdout + allowed.stderr
    assert not files_containing(tmp_path / "allowed", TOKEN)


def test_unsupported_tokenizer_is_refused_before_the_weights(hub: HubServer, hf_home: Path, publisher: KeyPair,
                                                             tmp_path: Path) -> None:
    repo = hub.repos["tiny-org/gpt2-tokenizer"]
    run = export(hub, hf_home, publisher, tmp_path / "b", "--hub-model-id", repo.repo_id, "--task-type",
                 "pass_through")
    assert run.returncode == 9
    assert "GPT2Tokenizer is not supported" in run.stderr
    fetched = {path for _, path, _ in hub.requests if repo.repo_id in path and "/resolve/" in path}
    assert fetched and not any(path.endswith(".safetensors") for path in fetched)
    assert not (tmp_path / "b").exists()


def test_legacy_pickled_weights_are_fetched_when_there_are_no_safetensors(
        hub: HubServer, hf_home: Path, publisher: KeyPair, tmp_path: Path) -> None:
    repo = hub.repos["tiny-org/legacy-weights"]
    run = export(hub, hf_home, publisher, tmp_path / "b", "--hub-model-id", repo.repo_id, "--task-type", "auto")
    assert run.returncode == 0, run.stderr
    manifest = Manifest.from_bytes((tmp_path / "b" / "manifest.json").read_bytes())
    assert "pytorch_model.bin" in manifest.provenance["files"]
    assert manifest.provenance["source"]["commit_sha"] == repo.sha
