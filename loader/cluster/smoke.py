"""Prove the cluster answers like the model did at export: each sample recorded in the signed manifest is sent
to `_infer` as Elasticsearch expects the task's input, and the answer is judged against what was recorded."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loader.cluster.client import Cluster
from loader.cluster.expectations import judge


@dataclass(frozen=True)
class SampleOutcome:
    text: str
    ok: bool
    detail: str


def task_update(task: str, given: Mapping[str, Any]) -> dict[str, Any] | None:
    """Pair tasks take their second input in the request's inference_config, as Elasticsearch expects."""
    if task == "text_similarity" and "text_pair" in given:
        return {"text_similarity": {"text": given["text_pair"]}}
    if task == "question_answering" and "text_pair" in given:
        return {"question_answering": {"question": given["text_pair"]}}
    if task == "zero_shot_classification" and "labels" in given:
        return {"zero_shot_classification": {"labels": list(given["labels"])}}
    return None


def smoke_test(cluster: Cluster, model_id: str, task: str, field_name: str,
               samples: Sequence[Mapping[str, Any]]) -> list[SampleOutcome]:
    outcomes = []
    for sample in samples:
        given = sample.get("input", {})
        text = given.get("text", "")
        update = task_update(task, given)
        response = cluster.call(f"run inference on [{model_id}]", lambda c, t=text, u=update: c.ml.infer_trained_model(
            model_id=model_id, docs=[{field_name: t}], timeout="60s", **({"inference_config": u} if u else {})))
        results = response.get("inference_results") or [{}]
        verdict = judge(sample.get("expected", {}), results[0])
        outcomes.append(SampleOutcome(text, verdict.ok, verdict.detail))
    return outcomes
