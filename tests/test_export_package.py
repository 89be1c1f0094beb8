"""`esbundle export --elastic-model`: one of Elastic's packages fetched from a model server, checked as the cluster
checks it, and carried byte for byte in a signed bundle.

The model server is a local HTTP server (tests/repository_server.py) serving packages made here
(tests/packages.py: a tiny BERT traced to `.pt`, its vocabulary, metadata in Elastic's shape). Expectations come
from those files and from the Hugging Face model run directly, never from what the export recorded.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import Keys, RunCli
from tests.packages import MadePackage, make_package, reference_embeddings
from tests.proxy_server import ProxyServer
from tests.reference import definition_bytes, raw_bytes
from tests.repository_server import RepositoryServer
from tests.without_torch import run_without_torch

MODEL_ERROR, USAGE_ERROR = 9, 2


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> MadePackage:
    return make_package(tmp_path_factory.mktemp("elastic") / "models", "tiny-e5", padding=2 << 20)


@pytest.fixture
def server(package: MadePackage, tmp_path: Path) -> Iterator[RepositoryServer]:
    """A fresh model server per test over a copy of the package (a test may change its files)."""
    root = tmp_path / "served"
    shutil.copytree(package.directory, root)
    served = RepositoryServer(root).start()
    yield served
    served.stop()


def export(run_cli: RunCli, keys: Keys, out: Path, name: str, url: str, *args: object,
           env: dict[str, str] | None = None):
    return run_cli("export", "--elastic-model", name, "--elastic-models-url", url, "--signing-key",
                   keys.pair.private_path, "--out", out, *args, env=env)


def left_behind(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith((out.name, f".{out.name}")))


def test_the_bundle_carries_the_three_files_byte_for_byte(package: MadePackage, server: RepositoryServer,
                                                          run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = export(run_cli, keys, out, ".tiny-e5", server.url)
    assert result.exit_code == 0, result.output
    assert definition_bytes(out) == package.pt.read_bytes()
    assert (out / "package" / "metadata.json").read_bytes() == package.metadata_file.read_bytes()
    manifest = json.loads((out / "manifest.json").read_bytes())
    entry = next(f for f in manifest["files"] if f["path"] == "vocabulary.json.zst")
    vocabulary = raw_bytes(out / "vocabulary.json.zst", entry)
    assert vocabulary == package.vocabulary_file.read_bytes()
    assert manifest["model_id"] == ".tiny-e5" and manifest["task_type"] == "text_embedding"
    record = manifest["package"]
    assert record["name"] == "tiny-e5"
    assert record["metadata"] == json.loads(package.metadata_file.read_bytes())
    assert record["source_url"] == server.url + "/"
    assert record["fetched_at"].endswith("Z")
    assert manifest["compatibility"]["min_es_version"] == "8.12.0"  # minimum_version 12.0.0 = MlConfigVersion V_12
    assert not (tmp_path / ".bundle.download").exists()
    assert [entry.path for entry in server.log] == ["/tiny-e5.metadata.json", "/tiny-e5.vocab.json", "/tiny-e5.pt"]
    verified = run_cli("verify", out, "--trusted-key", keys.pub)
    assert verified.exit_code == 0, verified.output
    assert "package tiny-e5: metadata passes the cluster's checks" in verified.output


def test_the_samples_are_what_the_hugging_face_model_answers(package: MadePackage, server: RepositoryServer,
                                                             run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert export(run_cli, keys, out, "tiny-e5", server.url).exit_code == 0
    samples = json.loads((out / "manifest.json").read_bytes())["samples"]
    assert len(samples) == 3
    want = reference_embeddings(package, [s["input"]["text"] for s in samples])
    for sample, vector in zip(samples, want, strict=True):
        expected = sample["expected"]
        assert expected["dimensions"] == vector.shape[0]
        assert torch.allclose(torch.tensor(expected["prefix"]), vector[:len(expected["prefix"])], atol=1e-4)
        assert abs(expected["norm"] - float(vector.norm())) < 1e-3


def test_sentencepiece_samples_are_what_the_hugging_face_model_answers(tmp_path_factory: pytest.TempPathFactory,
                                                                        run_cli: RunCli, keys: Keys,
                                                                        tmp_path: Path) -> None:
    """An E5-like package (xlm_roberta, pieces with scores): the cluster's Unigram tokenizer is rebuilt from the
    package's vocabulary document alone, and its samples equal the model run with its own tokenizer."""
    package = make_package(tmp_path_factory.mktemp("e5") / "models", "tiny-xlm", family="xlm_roberta")
    served = RepositoryServer(package.directory).start()
    try:
        out = tmp_path / "bundle"
        result = export(run_cli, keys, out, "tiny-xlm", served.url)
    finally:
        served.stop()
    assert result.exit_code == 0, result.output
    samples = json.loads((out / "manifest.json").read_bytes())["samples"]
    assert len(samples) == 3
    want = reference_embeddings(package, [s["input"]["text"] for s in samples])
    for sample, vector in zip(samples, want, strict=True):
        assert torch.allclose(torch.tensor(sample["expected"]["prefix"]), vector[:8], atol=1e-4)


def test_inspect_names_the_package_and_its_source(server: RepositoryServer, run_cli: RunCli, keys: Keys,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert export(run_cli, keys, out, "tiny-e5", server.url).exit_code == 0
    shown = run_cli("inspect", out, "--trusted-key", keys.pub)
    assert shown.exit_code == 0, shown.output
    assert "tiny-e5 (Elastic's packaged model), minimum_version 12.0.0, platform any" in shown.output
    assert f"from {server.url}/" in shown.output
    assert f"{server.url}/tiny-e5.pt" in shown.output


def test_the_url_comes_from_the_environment(server: RepositoryServer, run_cli: RunCli, keys: Keys,
                                            tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = run_cli("export", "--elastic-model", "tiny-e5", "--signing-key", keys.pair.private_path, "--out", out,
                     env={"ESBUNDLE_ELASTIC_MODELS_URL": server.url})
    assert result.exit_code == 0, result.output
    assert server.log[0].path == "/tiny-e5.metadata.json"


@pytest.mark.parametrize(("change", "what"), [
    (lambda pt: pt[:100] + bytes([pt[100] ^ 1]) + pt[101:], "sha256"),
    (lambda pt: pt + b"\0", "size"),
    (lambda pt: pt[:-1], "size"),
], ids=["one-byte", "one-longer", "one-shorter"])
def test_a_pt_that_differs_from_its_metadata_is_refused(change, what: str, package: MadePackage,
                                                        server: RepositoryServer, run_cli: RunCli, keys: Keys,
                                                        tmp_path: Path) -> None:
    served = server.root / "tiny-e5.pt"
    changed = change(served.read_bytes())
    served.write_bytes(changed)
    out = tmp_path / "bundle"
    result = export(run_cli, keys, out, "tiny-e5", server.url)
    assert result.exit_code == MODEL_ERROR, result.output
    assert "does not match its metadata" in result.output
    if what == "sha256":  # both values named
        assert f"sha256 expected [{package.metadata['sha256']}] but got [{hashlib.sha256(changed).hexdigest()}]" \
            in result.output
    else:
        assert f"size expected [{package.metadata['size']}]" in result.output
        assert f"[{len(changed)}] bytes" in result.output
    assert left_behind(out) == []


def test_a_cut_download_resumes_where_it_stopped(package: MadePackage, server: RepositoryServer, run_cli: RunCli,
                                                 keys: Keys, tmp_path: Path) -> None:
    half = package.pt.stat().st_size // 2
    server.cut_after["/tiny-e5.pt"] = half
    out = tmp_path / "bundle"
    first = export(run_cli, keys, out, "tiny-e5", server.url)
    assert first.exit_code == MODEL_ERROR, first.output
    assert "the download was cut" in first.output and "run the same command again" in first.output
    assert not out.exists()
    partial = tmp_path / ".bundle.download" / "tiny-e5.pt"
    kept = partial.stat().st_size
    assert 0 < kept <= half
    second = export(run_cli, keys, out, "tiny-e5", server.url)
    assert second.exit_code == 0, second.output
    assert server.ranges("/tiny-e5.pt") == [None, f"bytes={kept}-"]
    assert definition_bytes(out) == package.pt.read_bytes()
    assert left_behind(out) == ["bundle"]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"packaged_model_id": "other"}, "Invalid package name"),
    ({"minimum_version": None}, "Invalid model package configuration for [tiny-e5], missing minimum_version "
                                "property"),
    ({"minimum_version": "twelve"}, "failed to parse the minimum_version property"),
    ({"size": 0}, "Invalid package size"),
    ({"sha256": "a" * 63}, "Invalid package sha"),
    ({"vocabulary_file": "../../etc/passwd.json"}, "must be a plain file name in the repository"),
    ({"inference_config": {"text_embedding": {}, "text_expansion": {}}}, "inference_config must hold exactly one"),
], ids=["name", "no-minimum", "bad-minimum", "size", "sha", "vocabulary-path", "two-tasks"])
def test_metadata_the_cluster_would_refuse_is_refused_before_the_pt(changes: dict, expected: str,  # type: ignore[type-arg]
                                                                    package: MadePackage, server: RepositoryServer,
                                                                    run_cli: RunCli, keys: Keys,
                                                                    tmp_path: Path) -> None:
    metadata = {**package.metadata, **changes}
    metadata = {k: v for k, v in metadata.items() if v is not None}
    (server.root / "tiny-e5.metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    out = tmp_path / "bundle"
    result = export(run_cli, keys, out, "tiny-e5", server.url)
    assert result.exit_code == MODEL_ERROR, result.output
    assert expected in result.output
    assert [entry.path for entry in server.log] == ["/tiny-e5.metadata.json"]
    assert left_behind(out) == []


def test_integer_scores_are_refused_as_the_cluster_would(package: MadePackage, server: RepositoryServer,
                                                         run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    vocabulary = json.loads(package.vocabulary_file.read_bytes())
    # Elasticsearch casts each score to Double: an integer fails (ClassCastException)
    vocabulary["scores"] = [0] * len(vocabulary["vocabulary"])
    (server.root / "tiny-e5.vocab.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    out = tmp_path / "bundle"
    result = export(run_cli, keys, out, "tiny-e5", server.url)
    assert result.exit_code == MODEL_ERROR, result.output
    assert "[scores] must be a list of decimal numbers" in result.output
    assert left_behind(out) == []


@pytest.mark.parametrize(("args", "message"), [
    (("--task-type", "text_embedding"), "--task-type: not for --elastic-model"),
    (("--hub-model-id", "org/model"), "--hub-model-id: not for --elastic-model"),
    (("--quantize",), "--quantize: not for --elastic-model"),
])
def test_flags_that_would_change_a_package_are_refused(args: tuple[str, ...], message: str,
                                                       server: RepositoryServer, run_cli: RunCli, keys: Keys,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = export(run_cli, keys, out, "tiny-e5", server.url, *args)
    assert result.exit_code == USAGE_ERROR, result.output
    assert message in result.output
    assert server.log == [] and left_behind(out) == []


@pytest.mark.parametrize(("name", "url", "message"), [
    ("Tiny-E5", None, "package name 'Tiny-E5' must be lowercase"),
    ("tiny-e5", "ftp://example.invalid/", "must be an http://, https:// or file:// URL"),
    ("tiny-e5", "http://user:secret@127.0.0.1:9/", "must not carry credentials"),
    ("missing", None, "/missing.metadata.json: not found (HTTP 404)"),
])
def test_bad_names_and_urls_are_refused(name: str, url: str | None, message: str, server: RepositoryServer,
                                        run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = export(run_cli, keys, out, name, url or server.url)
    assert result.exit_code in (USAGE_ERROR, MODEL_ERROR), result.output
    assert message in result.output
    assert "secret" not in result.output
    assert left_behind(out) == []


@pytest.mark.parametrize("bypass", [False, True], ids=["through-the-proxy", "no-proxy"])
def test_downloads_honour_the_proxy_variables(bypass: bool, package: MadePackage, server: RepositoryServer,
                                              monkeypatch: pytest.MonkeyPatch, run_cli: RunCli, keys: Keys,
                                              tmp_path: Path) -> None:
    proxy = ProxyServer().start()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        if bypass:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        out = tmp_path / "bundle"
        result = export(run_cli, keys, out, "tiny-e5", server.url)
    finally:
        proxy.stop()
    assert result.exit_code == 0, result.output
    names = ("tiny-e5.metadata.json", "tiny-e5.vocab.json", "tiny-e5.pt")
    assert proxy.relayed == ([] if bypass else [f"{server.url}/{name}" for name in names])
    assert definition_bytes(out) == package.pt.read_bytes()


def test_volumes_and_copy_work_on_a_package_bundle(package: MadePackage, server: RepositoryServer, run_cli: RunCli,
                                          keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = export(run_cli, keys, out, "tiny-e5", server.url, "--volume-size", str(2 << 20))
    assert result.exit_code == 0, result.output
    volumes = sorted(out.iterdir())
    assert len(volumes) >= 2
    verified = run_cli("verify", *volumes, "--trusted-key", keys.pub)
    assert verified.exit_code == 0, verified.output
    copies = []
    for volume in volumes:  # each medium copied, read back and checked, then the copies verify as a whole
        copied = run_cli("copy", volume, tmp_path / "medium" / volume.name, "--trusted-key", keys.pub)
        assert copied.exit_code in (0, 8), copied.output  # 8: a single volume is correct, the others are elsewhere
        copies.append(tmp_path / "medium" / volume.name)
    verified = run_cli("verify", *copies, "--trusted-key", keys.pub)
    assert verified.exit_code == 0, verified.output
    manifest = json.loads((copies[0] / "manifest.json").read_bytes())
    parts = sorted((f for f in manifest["files"] if f["role"] == "definition_part"), key=lambda f: f["part"])
    copied_pt = b"".join(raw_bytes(tmp_path / "medium" / f"vol{f['volume']:03d}" / f["path"], f) for f in parts)
    assert copied_pt == package.pt.read_bytes()


def test_without_torch_the_bundle_has_no_graph_facts_and_says_so(package: MadePackage, server: RepositoryServer,
                                                                  keys: Keys, tmp_path: Path) -> None:
    """As on a connected machine without the export extra: the package is carried, unmeasured, said plainly."""
    out = tmp_path / "bundle"
    run = run_without_torch("export", "--elastic-model", "tiny-e5", "--elastic-models-url", server.url,
                            "--signing-key", keys.pair.private_path, "--out", out,
                            env={"PATH": "/usr/bin:/bin", "ESBUNDLE_NO_PROGRESS": "1"})
    assert run.returncode == 0, run.stderr
    assert "torch is not installed: the graph was not measured" in run.stderr
    assert "no samples recorded (torch is not installed)" in run.stderr
    assert "graph NOT measured and no samples recorded" in run.stdout
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["samples"] == [] and "graph" not in manifest["compatibility"]
    assert definition_bytes(out) == package.pt.read_bytes()

