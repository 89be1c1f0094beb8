"""`esbundle export` through the real click group: every bad input is a clear error naming the thing and the
check, with a non-zero exit and no bundle (and no temporary directory) left behind; the options reach the bundle.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # noqa: F401  (declared in [export]: missing is an error, not a skip)
from click.testing import Result

from bundler.keys import generate_keypair
from loader.format.manifest import Manifest
from loader.releases.libtorch import parse_version
from tests import models
from tests.conftest import Keys, RunCli
from tests.without_torch import run_without_torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    return {
        "classifier": models.bert(root / "classifier", labels=["NO", "YES"]),
        "gpt2": models.unsupported_tokenizer(root / "gpt2"),
        "empty": (root / "empty").mkdir() or root / "empty",
    }


def run_export(run_cli: RunCli, keys: Keys, out: Path, *args: object, env: dict[str, str] | None = None) -> Result:
    return run_cli("export", "--signing-key", keys.pair.private_path, "--out", out, *args, env=env)


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--model-dir", "{classifier}", "--task-type", "sentiment"), 2, "--task-type 'sentiment' is not a known task"),
    (("--model-dir", "{empty}", "--task-type", "auto"), 9, "not a Hugging Face model directory (no config.json)"),
    (("--model-dir", "{missing}", "--task-type", "auto"), 2, "does not exist"),
    (("--model-dir", "{gpt2}", "--task-type", "pass_through"), 9, "tokenizer GPT2Tokenizer is not supported"),
    (("--model-dir", "{classifier}", "--task-type", "ner"), 9,
     "task ner needs a model with a *ForTokenClassification head, but config.json names BertForSequenceClassification"),
    (("--model-dir", "{classifier}", "--task-type", "text_embedding"), 9, "task text_embedding needs"),
    (("--task-type", "auto"), 2, "give exactly one source"),
    (("--model-dir", "{classifier}", "--hub-model-id", "org/name", "--task-type", "auto"), 2, "exactly one source"),
    (("--model-dir", "{classifier}", "--task-type", "auto", "--es-model-id", "Bad Id"), 2, "--es-model-id"),
    (("--model-dir", "{classifier}", "--task-type", "auto", "--target-es-version", "9.2.0"), 6, "torch==2.7.1"),
    (("--model-dir", "{classifier}", "--task-type", "auto", "--target-es-version", "7.17.0"), 2,
     "Elasticsearch runs PyTorch models from 8.0.0 on"),
    (("--model-dir", "{classifier}", "--task-type", "auto", "--part-size", "12Q"), 2, "is not a size"),
    (("--model-dir", "{classifier}", "--task-type", "auto", "--max-model-input-length", "1000"), 9,
     "max_sequence_length 1000 (--max-model-input-length) is more than the model's position embeddings cover (128"),
    (("--model-dir", "{classifier}", "--task-type", "auto", "--expires-in", "soon"), 2, "--expires-in"),
])
def test_bad_input_is_refused_cleanly(args: tuple[str, ...], code: int, message: str, zoo: dict[str, Path],
                                      run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "work" / "bundle"
    out.parent.mkdir()
    paths = {**{k: str(v) for k, v in zoo.items()}, "missing": str(tmp_path / "nowhere")}
    result = run_export(run_cli, keys, out, *(a.format(**paths) for a in args))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert_nothing_left(out)


def test_torch_refusal_says_what_to_install(zoo: dict[str, Path], run_cli: RunCli, keys: Keys,
                                            tmp_path: Path) -> None:
    result = run_export(run_cli, keys, tmp_path / "b", "--model-dir", zoo["classifier"], "--task-type", "auto",
                        "--target-es-version", "9.2.0")
    assert result.exit_code == 6
    assert "newer than libtorch 2.7.1, which Elasticsearch 9.2.0 runs" in result.output
    assert "pip install torch==2.7.1" in result.output and "--allow-newer-torch" in result.output


def test_existing_output_is_never_touched(zoo: dict[str, Path], run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = run_export(run_cli, keys, out, "--model-dir", zoo["classifier"], "--task-type", "auto")
    assert result.exit_code == 2 and "already exists; refusing to overwrite" in result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_unreadable_signing_key(zoo: dict[str, Path], run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = run_cli("export", "--signing-key", tmp_path / "no.key", "--out", out, "--model-dir", zoo["classifier"],
                     "--task-type", "auto")
    assert result.exit_code == 10 and "no.key: cannot be read" in result.output
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    result = run_cli("export", "--signing-key", garbage, "--out", out, "--model-dir", zoo["classifier"],
                     "--task-type", "auto")
    assert result.exit_code == 10 and "not a PEM private key" in result.output
    assert_nothing_left(out)


def test_wrong_passphrase(zoo: dict[str, Path], run_cli: RunCli, tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "keys", passphrase=b"correct horse")
    out = tmp_path / "b"
    result = run_cli("export", "--signing-key", pair.private_path, "--out", out, "--model-dir", zoo["classifier"],
                     "--task-type", "auto", env={"ESBUNDLE_KEY_PASSPHRASE": "battery staple"})
    assert result.exit_code == 10 and "wrong passphrase" in result.output
    assert_nothing_left(out)


def test_options_reach_the_bundle(zoo: dict[str, Path], run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = run_export(run_cli, keys, out, "--model-dir", zoo["classifier"], "--task-type", "text-classification",
                        "--es-model-id", "my-classifier", "--part-size", "8K", "--bundle-version", "3",
                        "--expires-in", "never", "--ingest-prefix", "passage: ", "--search-prefix", "query: ",
                        "--max-model-input-length", "32", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["es_model_id"] == "my-classifier" and summary["task_type"] == "text_classification"
    assert summary["part_count"] == -(-summary["definition_bytes"] // 8192)
    manifest = Manifest.from_bytes((out / "manifest.json").read_bytes())
    assert manifest.bundle_version == 3 and manifest.expires_at is None and manifest.definition.part_size == 8192
    config = json.loads((out / "config.json").read_text())
    assert config["prefix_strings"] == {"ingest": "passage: ", "search": "query: "}
    tokenization = config["inference_config"]["text_classification"]["tokenization"]["bert"]
    assert tokenization["max_sequence_length"] == 32
    assert manifest.provenance["max_sequence_length_from"] == "--max-model-input-length"
    assert parse_version(manifest.compatibility["min_es_version"]) >= (8, 12, 0)  # prefix_strings


def test_help_lists_every_option(run_cli: RunCli) -> None:
    result = run_cli("export", "--help")
    assert result.exit_code == 0
    for option in ("--hub-model-id", "--revision", "--model-dir", "--task-type", "--signing-key", "--out",
                   "--es-model-id", "--quantize", "--max-model-input-length", "--ingest-prefix", "--search-prefix",
                   "--target-es-version", "--allow-newer-torch", "--part-size", "--bundle-version", "--expires-in",
                   "--json"):
        assert option in result.output


def test_command_module_imports_no_torch() -> None:
    code = ("import sys, bundler.cli.esbundle; "
            "heavy = [m for m in ('torch', 'transformers', 'huggingface_hub', 'sentence_transformers') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_without_torch_the_command_says_to_install_the_extra(zoo: dict[str, Path], tmp_path: Path) -> None:
    """As on the offline install: the heavy libraries cannot be imported."""
    pair = generate_keypair(tmp_path / "keys")
    run = run_without_torch("export", "--model-dir", zoo["classifier"], "--task-type", "auto", "--signing-key",
                            pair.private_path, "--out", tmp_path / "b", timeout=120)
    assert run.returncode == 2, run.stderr
    assert "pip install 'esbundle[export]'" in run.stderr
    assert not (tmp_path / "b").exists()
