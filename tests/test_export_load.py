"""Export, then `esbundle load` into the Elasticsearch stand-in, deploy, and the smoke test: the cluster's answers
to the samples recorded at export match. The whole path the issue is about, on tiny models (and the real one).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch  # noqa: F401  (declared in [export]: missing is an error, not a skip)

from tests import models
from tests.conftest import Keys, RunCli
from tests.standin.fixture import StandIn

MODELS: dict[str, Callable[[Path], Path]] = {
    "classifier": lambda p: models.bert(p, labels=["NEGATIVE", "POSITIVE"]),
    "ner": lambda p: models.bert(p, "AutoModelForTokenClassification", ["O", "B-PER", "I-PER"]),
    "sentence-transformer": models.mpnet_sentence_transformer,
    "xlm-roberta": models.xlm_roberta,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_bundle_loads_deploys_and_answers_like_its_samples(
        name: str, tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    model_dir = MODELS[name](tmp_path / "model")
    bundle = tmp_path / "bundle"
    # Exported for 9.2.0 with the publisher's consent to the newer torch, so the loader needs no --force.
    exported = run_cli("export", "--model-dir", model_dir, "--task-type",
                       "pass_through" if name == "xlm-roberta" else "auto", "--signing-key", keys.pair.private_path,
                       "--out", bundle, "--target-es-version", "9.2.0", "--allow-newer-torch")
    assert exported.exit_code == 0, exported.output
    server = standin(es_version="9.2.0")
    loaded = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--start", "--smoke-test")
    assert loaded.exit_code == 0, loaded.output
    smoke = [line for line in loaded.output.splitlines() if line.startswith("ok    smoke")]
    assert len(smoke) == 3, loaded.output
    assert "accepted that at export (--allow-newer-torch)" in loaded.output


def test_a_cluster_that_answers_differently_fails_the_smoke_test(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    """The publisher's recorded answer and the cluster's differ: the load fails and says what differed."""
    import json

    from bundler.sign import sign_manifest
    from loader.format.canonical import canonical_bytes

    model_dir = models.mpnet_sentence_transformer(tmp_path / "model")
    bundle = tmp_path / "bundle"
    exported = run_cli("export", "--model-dir", model_dir, "--task-type", "text_embedding", "--signing-key",
                       keys.pair.private_path, "--out", bundle, "--target-es-version", "9.2.0", "--allow-newer-torch")
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    manifest["samples"][1]["expected"]["prefix"][0] += 0.5
    raw = canonical_bytes(manifest)
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.dsse.json").write_bytes(sign_manifest(raw, keys.signing))
    server = standin(es_version="9.2.0")
    loaded = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--start")
    assert loaded.exit_code == 7, loaded.output
    assert "differ from the model's at export for 1 of 3 sample(s)" in loaded.stderr
    assert "embedding differs: max |diff|" in loaded.stderr
