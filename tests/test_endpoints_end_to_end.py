"""`esbundle load --inference-id` end to end: a bundle exported from a tiny model, loaded into the stand-in, the
endpoint created over it, and `POST _inference` answering what the model itself answers (the Hugging Face model or
SentenceTransformer run directly here, never the exporter's recorded numbers)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from sentence_transformers import SentenceTransformer

from tests import models
from tests.conftest import Keys, RunCli
from tests.standin.fixture import StandIn

TEXTS = ["The weather in Paris is sunny today.", "Search engines index millions of documents."]
QUERY = "Where is it sunny?"


def export(run_cli: RunCli, keys: Keys, model_dir: Path, bundle: Path, task: str, model_id: str) -> None:
    exported = run_cli("export", "--model-dir", model_dir, "--task-type", task, "--es-model-id", model_id,
                       "--signing-key", keys.pair.private_path, "--out", bundle, "--target-es-version", "9.2.0",
                       "--allow-newer-torch")
    assert exported.exit_code == 0, exported.output


def load(run_cli: RunCli, keys: Keys, bundle: Path, server: StandIn, *extra: str) -> Any:
    return run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, *extra)


def post(server: StandIn, path: str, body: dict[str, Any]) -> Any:
    answer = server.http("POST", path, body=body)
    assert answer.status == 200, answer.body[:300]
    return answer.json()


def endpoint_smoke_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ok    smoke") and "_inference:" in line]


def test_an_embedding_endpoint_answers_like_sentence_transformers(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    model_dir = models.mpnet_sentence_transformer(tmp_path / "model")
    export(run_cli, keys, model_dir, tmp_path / "bundle", "text_embedding", "mpnet-tiny")
    server = standin(es_version="9.2.0")
    loaded = load(run_cli, keys, tmp_path / "bundle", server, "--inference-id", "mpnet-endpoint", "--json")
    assert loaded.exit_code == 0, loaded.output
    receipt = json.loads(loaded.stdout)
    assert receipt["inference_endpoint"] == {"inference_id": "mpnet-endpoint", "plan": "create",
                                             "task_type": "text_embedding"}
    assert all(s["ok"] for s in receipt["smoke_test"]) and len(receipt["smoke_test"]) == 6
    answer = post(server, "/_inference/text_embedding/mpnet-endpoint", {"input": TEXTS})
    want = SentenceTransformer(str(model_dir), device="cpu").encode(TEXTS, convert_to_tensor=True)
    got = torch.tensor([e["embedding"] for e in answer["text_embedding"]])
    assert torch.allclose(got, want, atol=1e-4, rtol=0)
    endpoint = server.http("GET", "/_inference/mpnet-endpoint").json()["endpoints"][0]
    assert endpoint["service_settings"]["model_id"] == "mpnet-tiny"
    assert endpoint["service_settings"]["dimensions"] == want.shape[1]

    again = load(run_cli, keys, tmp_path / "bundle", server, "--inference-id", "mpnet-endpoint")
    assert again.exit_code == 0, again.output
    assert "[mpnet-endpoint]: keep" in again.output and "already serves [mpnet-tiny]" in again.output
    assert len(endpoint_smoke_lines(again.output)) == 3

    status = run_cli("status", "--url", server.url, "--json")
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.stdout)
    assert row["model_id"] == "mpnet-tiny" and row["endpoints"] == ["mpnet-endpoint"]


def test_an_endpoint_serving_another_model_is_refused_then_replaced(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    model_dir = models.mpnet_sentence_transformer(tmp_path / "model")
    export(run_cli, keys, model_dir, tmp_path / "a", "text_embedding", "model-a")
    export(run_cli, keys, model_dir, tmp_path / "b", "text_embedding", "model-b")
    server = standin(es_version="9.2.0")
    assert load(run_cli, keys, tmp_path / "a", server, "--inference-id", "shared").exit_code == 0
    refused = load(run_cli, keys, tmp_path / "b", server, "--inference-id", "shared")
    assert refused.exit_code == 7, refused.output
    assert "inference endpoint [shared] exists and serves [model-a]" in refused.stderr
    assert "--replace" in refused.stderr
    ids = [m["model_id"] for m in server.http("GET", "/_ml/trained_models/model-*").json()["trained_model_configs"]]
    assert ids == ["model-a"]  # nothing of model-b was sent
    replaced = load(run_cli, keys, tmp_path / "b", server, "--inference-id", "shared", "--replace")
    assert replaced.exit_code == 0, replaced.output
    endpoint = server.http("GET", "/_inference/shared").json()["endpoints"][0]
    assert endpoint["service_settings"]["model_id"] == "model-b"


def test_replacing_a_model_deletes_its_endpoints_first(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    """Elasticsearch deletes a model an endpoint still uses only by force and leaves the endpoint pointing at
    nothing: --replace deletes the endpoints first and says so."""
    model_dir = models.mpnet_sentence_transformer(tmp_path / "model")
    export(run_cli, keys, model_dir, tmp_path / "v1", "text_embedding", "same-id")
    export(run_cli, keys, model_dir, tmp_path / "v2", "text_embedding", "same-id")
    server = standin(es_version="9.2.0")
    assert load(run_cli, keys, tmp_path / "v1", server, "--inference-id", "old-endpoint").exit_code == 0
    replaced = load(run_cli, keys, tmp_path / "v2", server, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert "deleted the inference endpoint [old-endpoint] that used the replaced model" in replaced.output
    assert server.http("GET", "/_inference/old-endpoint").status == 404


def reference_scores(model_dir: Path, query: str, texts: list[str]) -> list[float]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return [float(model(**tokenizer(query, t, return_tensors="pt")).logits[0, 0]) for t in texts]


def test_a_rerank_endpoint_orders_like_the_cross_encoder(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    model_dir = models.roberta(tmp_path / "model", labels=["score"])
    export(run_cli, keys, model_dir, tmp_path / "bundle", "auto", "cross-tiny")
    server = standin(es_version="9.2.0")
    loaded = load(run_cli, keys, tmp_path / "bundle", server, "--inference-id", "rerank-tiny")
    assert loaded.exit_code == 0, loaded.output
    assert len(endpoint_smoke_lines(loaded.output)) == 3
    answer = post(server, "/_inference/rerank/rerank-tiny", {"input": TEXTS, "query": QUERY})
    want = reference_scores(model_dir, QUERY, TEXTS)
    ranked = sorted(range(len(TEXTS)), key=lambda i: -want[i])
    assert [r["index"] for r in answer["rerank"]] == ranked
    for entry in answer["rerank"]:
        assert abs(entry["relevance_score"] - want[entry["index"]]) < 1e-4
        assert entry["text"] == TEXTS[entry["index"]]


def splade_reference(model_dir: Path, text: str) -> dict[int, float]:
    """SPLADE written out: max over the tokens of log(1 + relu(logits)), non-zero weights by vocabulary id."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
    weights = torch.log1p(torch.relu(logits)).max(dim=0).values
    return {int(i): float(weights[i]) for i in torch.nonzero(weights).flatten()}


def test_a_sparse_endpoint_answers_the_splade_weights(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    model_dir = models.bert_masked_lm(tmp_path / "model")
    export(run_cli, keys, model_dir, tmp_path / "bundle", "text_expansion", "splade-tiny")
    server = standin(es_version="9.2.0")
    loaded = load(run_cli, keys, tmp_path / "bundle", server, "--inference-id", "splade-endpoint")
    assert loaded.exit_code == 0, loaded.output
    assert len(endpoint_smoke_lines(loaded.output)) == 3
    answer = post(server, "/_inference/sparse_embedding/splade-endpoint", {"input": TEXTS[0]})
    (result,) = answer["sparse_embedding"]
    assert result["is_truncated"] is False
    vocabulary = transformers.AutoTokenizer.from_pretrained(str(model_dir)).convert_ids_to_tokens
    want = {vocabulary(i).replace(".", "__"): w for i, w in splade_reference(model_dir, TEXTS[0]).items()}
    assert set(result["embedding"]) == set(want)
    for token, weight in want.items():
        assert abs(result["embedding"][token] - weight) < 1e-4, token
