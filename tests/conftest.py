"""Fixtures shared by the whole suite: real keys, real bundles, the CLI run in-process; the skip gate."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bundler.cli.esbundle import cli
from bundler.keys import KeyPair, SigningKey, generate_keypair, load_signing_key
from bundler.writer.bundle import write_bundle
from bundler.writer.travel import Travel
from loader import settings

# tests.skip_gate: the run fails on any skip or xfail not listed, with its reason, in tests/allowed_skips.txt.
pytest_plugins = ["tests.standin.fixture", "tests.skip_gate"]

FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

EMBEDDING_CONFIG: dict[str, Any] = {
    "model_type": "pytorch",
    "inference_config": {"text_embedding": {"tokenization": {"bert": {"do_lower_case": True,
                                                                      "max_sequence_length": 128}}}},
    "input": {"field_names": ["text_field"]},
}
TINY_VOCAB: dict[str, Any] = {"vocabulary": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]}


@dataclass
class Keys:
    pair: KeyPair
    signing: SigningKey

    @property
    def pub(self) -> Path:
        return self.pair.public_path


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    pair = generate_keypair(tmp_path / "keys", "publisher")
    return Keys(pair, load_signing_key(pair.private_path))


@pytest.fixture
def other_keys(tmp_path: Path) -> Keys:
    pair = generate_keypair(tmp_path / "other-keys", "stranger")
    return Keys(pair, load_signing_key(pair.private_path))


def random_file(path: Path, size: int, seed: int = 0) -> Path:
    import random

    path.write_bytes(random.Random(seed).randbytes(size))
    return path


@pytest.fixture
def make_bundle(tmp_path: Path, keys: Keys) -> Callable[..., Path]:
    """Write a real bundle around a random definition; keyword arguments go to write_bundle. Every file is stored
    zstd-compressed unless `travel` says otherwise, so that the tamper tests reach the decompression path (random
    data would travel raw under the product's default, `auto`)."""
    counter = iter(range(1000))

    def make(size: int = 300_000, *, part_size: int = 64 << 10, name: str | None = None, **kwargs: Any) -> Path:
        n = next(counter)
        definition = random_file(tmp_path / f"model-{n}.pt", size, seed=n)
        out = tmp_path / (name or f"bundle-{n}")
        options: dict[str, Any] = {"config": EMBEDDING_CONFIG, "vocabulary": TINY_VOCAB, "signing_key": keys.signing,
                                   "model_id": "tiny-model", "task_type": "text_embedding",
                                   "part_size": part_size, "created_at": FIXED_TIME, "expires_in_days": None,
                                   "travel": Travel(compression="zstd")}
        options.update(kwargs)
        write_bundle(out, definition=definition, **options)
        return out

    return make


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Run `esbundle ARGS` in-process (the real click app), returning exit code and output."""
    def run(*args: Any, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, [str(a) for a in args], env={"ESBUNDLE_NO_PROGRESS": "1", **(env or {})},
                             catch_exceptions=False)
    return run


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never let a developer's own settings, keys, cloud id or proxies leak into a test.
    for name in list(os.environ):
        if name.startswith(("ESBUNDLE_", "ES_")) or name.upper() in (
                "CLOUD_ID", "HUB_ACCESS_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ESBUNDLE_AUDIT_LOG", str(tmp_path / "receipts.jsonl"))
    # The scrub list lives as long as the process, as it does for one command: a test's password (say "one") must
    # not be scrubbed from the next test's output.
    monkeypatch.setattr(settings, "_SECRETS", set())


MakeBundle = Callable[..., Path]
RunCli = Callable[..., Result]
