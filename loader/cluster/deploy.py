"""Start the deployment, wait for the allocation state asked for, and prove the cluster answers like the
original model did at export (the samples recorded in the signed manifest)."""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loader.cluster.client import Cluster
from loader.errors import ClusterError


@dataclass(frozen=True)
class StartOptions:
    wait_for: str = "started"
    allocations: int | None = None
    threads: int | None = None
    priority: str | None = None
    timeout: float = 300.0


def deployment_state(cluster: Cluster, model_id: str) -> tuple[str | None, str | None]:
    """(deployment state, allocation state) or (None, None) when not deployed."""
    stats = cluster.call(f"read the stats of [{model_id}]", lambda c: c.ml.get_trained_models_stats(model_id=model_id))
    for entry in stats.get("trained_model_stats") or []:
        deployment = entry.get("deployment_stats")
        if deployment:
            return deployment.get("state"), (deployment.get("allocation_status") or {}).get("state")
    return None, None


def start(cluster: Cluster, model_id: str, options: StartOptions) -> str:
    """Start (unless already started) and return the allocation state reached."""
    from elasticsearch import ApiError

    state, allocation = deployment_state(cluster, model_id)
    if state in ("started", "starting"):
        return _wait(cluster, model_id, options, deadline=time.monotonic() + options.timeout)
    params: dict[str, Any] = {"model_id": model_id, "wait_for": options.wait_for,
                              "timeout": f"{int(min(options.timeout, 30))}s"}
    optional = {"number_of_allocations": options.allocations, "threads_per_allocation": options.threads,
                "priority": options.priority}
    params.update({name: value for name, value in optional.items() if value})
    deadline = time.monotonic() + options.timeout
    try:
        response = cluster.call(f"start the deployment of [{model_id}]",
                                lambda c: c.ml.start_trained_model_deployment(**params), ok_statuses=(408,))
        allocation = ((response.get("assignment") or {}).get("assignment_state"))
        if options.wait_for == "started" or allocation == "fully_allocated":
            return allocation or "started"
    except ApiError as exc:
        if exc.meta.status != 408:
            raise
        # 408: the deployment goes on starting; keep polling the stats.
    return _wait(cluster, model_id, options, deadline)


def _wait(cluster: Cluster, model_id: str, options: StartOptions, deadline: float) -> str:
    delay = 0.25
    while True:
        state, allocation = deployment_state(cluster, model_id)
        if state == "failed":
            raise ClusterError(f"the deployment of [{model_id}] failed on the cluster")
        reached = allocation == "fully_allocated" if options.wait_for == "fully_allocated" else state == "started"
        if reached:
            return allocation or state or "started"
        if time.monotonic() > deadline:
            raise ClusterError(f"[{model_id}] is still {state or 'not started'} ({allocation}) after "
                               f"{options.timeout:.0f} s", hint="raise --timeout, or check the ML nodes' memory")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


@dataclass(frozen=True)
class SampleOutcome:
    text: str
    ok: bool
    detail: str


def _compare(task: str, expected: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[bool, str]:
    atol = float(expected.get("atol", 1e-3))
    if "prefix" in expected:
        vector = result.get("predicted_value")
        if not isinstance(vector, list) or not all(isinstance(v, (int, float)) for v in vector):
            return False, f"no embedding in the answer ({sorted(result)})"
        if len(vector) != expected["dimensions"]:
            return False, f"{len(vector)} dimensions, expected {expected['dimensions']}"
        worst = max(abs(a - b) for a, b in zip(vector, expected["prefix"], strict=False))
        norm = math.sqrt(sum(v * v for v in vector))
        if worst > atol or abs(norm - expected["norm"]) > atol:
            return False, f"embedding differs: max |diff| {worst:.2e} over the first {len(expected['prefix'])} " \
                          f"values, norm {norm:.6f} vs {expected['norm']:.6f} (tolerance {atol})"
        return True, f"{len(vector)} dims, max |diff| {worst:.1e}, norm {norm:.4f}"
    if "predicted_value" in expected:
        got, want = result.get("predicted_value"), expected["predicted_value"]
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            # text_similarity answers a score, not a label.
            if not isinstance(got, (int, float)) or abs(got - want) > atol:
                return False, f"score {got!r}, expected {want!r} (tolerance {atol})"
            return True, f"score {got:.4f}"
        if got != want:
            return False, f"label {got!r}, expected {want!r}"
        return True, f"label {got!r}"
    return ("inference_results" not in result and "error" not in result), f"{task}: answered"


def _task_update(task: str, given: Mapping[str, Any]) -> dict[str, Any] | None:
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
        update = _task_update(task, given)
        response = cluster.call(f"run inference on [{model_id}]", lambda c, t=text, u=update: c.ml.infer_trained_model(
            model_id=model_id, docs=[{field_name: t}], timeout="60s", **({"inference_config": u} if u else {})))
        results = response.get("inference_results") or [{}]
        ok, detail = _compare(task, sample.get("expected", {}), results[0])
        outcomes.append(SampleOutcome(text, ok, detail))
    return outcomes
