"""Every one of the nine tasks end to end: a tiny model exported, loaded with `--start` into the stand-in (whose
smoke test must pass), and the stand-in's `_infer` answers compared with the Hugging Face model run directly,
turned into Elasticsearch's answer shape by the rules written out in tests/test_export_tiny.py (never with the
exporter's own recorded numbers)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from tests.conftest import Keys, RunCli
from tests.standin.fixture import StandIn
from tests.test_export_tiny import CASES, SAMPLE_CHECKS, Exported, check_zero_shot, reference_answer, sample_pair

ONE_PER_TASK = {"text_classification": "bert-classifier", "ner": "distilbert-ner", "question_answering": "electra-qa",
                "fill_mask": "bert-mlm", "text_expansion": "bert-expansion", "text_embedding":
                "mpnet-sentence-transformer", "text_similarity": "roberta-cross-encoder",
                "zero_shot_classification": "bart-nli", "pass_through": "xlm-roberta-base"}
BY_NAME = {case.name: case for case in CASES}
# What each task's request adds so the answer carries what the check reads (Elasticsearch's defaults otherwise).
UPDATES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "text_classification": lambda given: {"num_top_classes": -1},
    "zero_shot_classification": lambda given: {"labels": given["labels"]},
    "question_answering": lambda given: {"question": given["text_pair"]},
    "text_similarity": lambda given: {"text": given["text_pair"]},
}


def as_recorded(task: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The stand-in's answer in the shape the sample checks read (the answer's own fields, nothing computed)."""
    answer = {k: v for k, v in answer.items() if k != "is_truncated"}
    value = answer.get("predicted_value")
    if task == "text_embedding":
        vector = torch.tensor(value)
        return {"dimensions": len(value), "prefix": value[:8], "norm": float(vector.norm())}
    if task == "text_expansion":
        top = sorted(value.items(), key=lambda kv: -kv[1])[:10]
        return {"expansion": dict(top)}
    if task == "pass_through":
        return {"output_prefix": torch.tensor(value).flatten()[:8].tolist(), "shape": list(torch.tensor(value).shape)}
    return answer


@pytest.mark.parametrize("task", sorted(ONE_PER_TASK))
def test_the_clusters_answer_is_the_models(task: str, tmp_path: Path, keys: Keys, run_cli: RunCli,
                                           standin: Callable[..., StandIn]) -> None:
    case = BY_NAME[ONE_PER_TASK[task]]
    model_dir, bundle = case.make(tmp_path / "model"), tmp_path / "bundle"
    exported = run_cli("export", "--model-dir", model_dir, "--task-type", case.task, "--es-model-id", "tiny",
                       "--signing-key", keys.pair.private_path, "--out", bundle, "--target-es-version", "9.2.0",
                       "--allow-newer-torch")
    assert exported.exit_code == 0, exported.output
    server = standin(es_version="9.2.0")
    loaded = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--start")
    assert loaded.exit_code == 0, loaded.output
    assert len([line for line in loaded.output.splitlines() if line.startswith("ok    smoke")]) == 3, loaded.output
    item = Exported(case, model_dir, bundle, None)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = json.loads((bundle / "config.json").read_text())
    field = config["input"]["field_names"][0]
    for sample in json.loads((bundle / "manifest.json").read_bytes())["samples"]:
        given = sample["input"]
        update = UPDATES.get(task, lambda g: {})(given)
        body: dict[str, Any] = {"docs": [{field: given["text"]}]}
        if update:
            body["inference_config"] = {task: update}
        response = server.http("POST", "/_ml/trained_models/tiny/_infer", body=body)
        assert response.status == 200, response.body[:300]
        (answer,) = response.json()["inference_results"]
        if task == "zero_shot_classification":
            check_zero_shot(item, tokenizer, given, as_recorded(task, answer))
            continue
        first, second, truncation = sample_pair(task, given)
        named = tokenizer(first, second, truncation=truncation, max_length=case.max_length, return_tensors="pt",
                          return_token_type_ids=True)
        want = reference_answer(case, model_dir, named)
        SAMPLE_CHECKS[task](item, tokenizer, given, as_recorded(task, answer), want, named)
