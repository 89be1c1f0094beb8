"""Make a loaded model usable by `semantic_text` and the `_inference` API: an inference endpoint of the
`elasticsearch` service over the model, then proof that the endpoint answers like the model did at export.

Facts (Elasticsearch's inference plugin: ElasticsearchInternalService, TransportPutInferenceModelAction):
the endpoint's task type follows from the model's inference config (text_embedding -> text_embedding,
text_expansion -> sparse_embedding, text_similarity -> rerank; nothing else maps); creating it starts a
deployment of the model whose id is the endpoint's and waits until it is started; an id equal to an existing
deployment's is refused.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loader.cluster import privileges
from loader.cluster.client import Cluster
from loader.cluster.deploy import StartOptions
from loader.cluster.expectations import judge
from loader.cluster.smoke import SampleOutcome
from loader.errors import ClusterError, UsageError
from loader.format.model_config import model_id_problem
from loader.releases.libtorch import Version

ENDPOINT_TASK = {"text_embedding": "text_embedding", "text_expansion": "sparse_embedding",
                 "text_similarity": "rerank"}
# The first release whose `elasticsearch` service serves an imported model for each endpoint task type, and the
# first with adaptive allocations (release notes and docs of 8.13, 8.15, 8.16; see README, "Inference endpoints").
SINCE = {"text_embedding": (8, 13, 0), "rerank": (8, 15, 0), "sparse_embedding": (8, 16, 0)}
ADAPTIVE_SINCE = (8, 15, 0)


@dataclass(frozen=True)
class EndpointOptions:
    inference_id: str
    adaptive: tuple[int, int] | None = None  # min and max allocations; None: a fixed number


def endpoint_task(task: str, inference_id: str) -> str:
    """The endpoint task type for a model task, refused before anything is written when there is none."""
    if task not in ENDPOINT_TASK:
        raise UsageError(f"--inference-id {inference_id}: a {task} model cannot back an inference endpoint; "
                         f"Elasticsearch maps only {', '.join(sorted(ENDPOINT_TASK))} models to endpoint tasks",
                         hint="leave out --inference-id and use the model through _ml/trained_models/<id>/_infer")
    return ENDPOINT_TASK[task]


def check_options(task: str, options: EndpointOptions) -> None:
    """What can be refused from the bundle and the flags alone (the id by Elasticsearch's MlStrings.isValidId)."""
    endpoint_task(task, options.inference_id)
    problem = model_id_problem(options.inference_id)
    if problem:
        raise UsageError(f"--inference-id: {problem.replace('model id', 'inference id', 1)}")
    if options.adaptive:
        low, high = options.adaptive
        if not 0 <= low <= high or high < 1:
            raise UsageError(f"--adaptive-allocations {low}:{high}: MIN must not exceed MAX, and MAX must be at "
                             "least 1")


def check_release(version: Version, task: str, options: EndpointOptions) -> None:
    endpoint = endpoint_task(task, options.inference_id)
    since = SINCE[endpoint]
    if version[:3] < since:
        raise ClusterError(f"--inference-id: Elasticsearch {'.'.join(map(str, version[:3]))} cannot serve an "
                           f"imported model as a {endpoint} endpoint (from {'.'.join(map(str, since))})",
                           hint="leave out --inference-id, or upgrade the cluster")
    if options.adaptive and version[:3] < ADAPTIVE_SINCE:
        raise ClusterError("--adaptive-allocations: Elasticsearch supports adaptive allocations from 8.15",
                           hint="use --allocations instead")


def endpoint_body(model_id: str, start: StartOptions, options: EndpointOptions) -> dict[str, Any]:
    settings: dict[str, Any] = {"model_id": model_id, "num_threads": start.threads or 1}
    if options.adaptive:
        low, high = options.adaptive
        settings["adaptive_allocations"] = {"enabled": True, "min_number_of_allocations": low,
                                            "max_number_of_allocations": high}
    else:
        settings["num_allocations"] = start.allocations or 1
    return {"service": "elasticsearch", "service_settings": settings}


def _existing(cluster: Cluster, inference_id: str) -> Mapping[str, Any] | None:
    from elasticsearch import NotFoundError

    try:
        found = privileges.guarded(cluster, "get_endpoint", f"look up the inference endpoint [{inference_id}]",
                                   lambda c: c.inference.get(inference_id=inference_id),
                                   ids={"inference_id": inference_id}, ok_statuses=(404,))
    except NotFoundError:
        return None
    endpoints = found.get("endpoints") or found.get("models") or []  # `models` before 8.15
    return endpoints[0] if endpoints else None


def served_model(endpoint: Mapping[str, Any]) -> str | None:
    return (endpoint.get("service_settings") or {}).get("model_id")


def endpoint_id(endpoint: Mapping[str, Any]) -> str:
    return str(endpoint.get("inference_id") or endpoint.get("model_id"))  # `model_id` before 8.15


def preflight(cluster: Cluster, model_id: str, task: str, options: EndpointOptions, *, replace: bool) -> str:
    """Before anything is sent: the release serves the endpoint's task, and the id is free, already ours, or
    (with --replace) another model's to take over. Returns the plan: create, keep or replace."""
    check_release(cluster.version, task, options)
    existing = _existing(cluster, options.inference_id)
    if existing is None:
        return "create"
    endpoint = ENDPOINT_TASK[task]
    ours = existing.get("service") == "elasticsearch" and existing.get("task_type") == endpoint
    if ours and served_model(existing) == model_id:
        return "keep"
    if replace:
        return "replace"
    raise ClusterError(f"inference endpoint [{options.inference_id}] exists and serves [{served_model(existing)}] "
                       f"({existing.get('service')}, {existing.get('task_type')}), not [{model_id}]",
                       hint="choose another --inference-id, or pass --replace to delete it and create it anew")


def by_model(cluster: Cluster, notes: list[str] | None = None) -> dict[str, list[str]]:
    """Endpoint ids of the elasticsearch service, by the model each serves (none before 8.13). With `notes` the
    listing only informs (`status`): a user who may not read endpoints gets a note and none."""
    if cluster.version[:3] < SINCE["text_embedding"]:
        return {}
    what = "list the inference endpoints"
    if notes is None:
        found = privileges.guarded(cluster, "list_endpoints", what, lambda c: c.inference.get())
    else:
        found = privileges.informative(cluster, "status_endpoints", what, lambda c: c.inference.get(), notes)
        if found is None:
            return {}
    served: dict[str, list[str]] = {}
    for endpoint in found.get("endpoints") or found.get("models") or []:
        model_id = served_model(endpoint)
        if endpoint.get("service") == "elasticsearch" and model_id:
            served.setdefault(model_id, []).append(endpoint_id(endpoint))
    return served


def using_model(cluster: Cluster, model_id: str) -> list[str]:
    return by_model(cluster).get(model_id, [])


def delete_endpoint(cluster: Cluster, inference_id: str) -> None:
    """Force: a semantic_text mapping or a pipeline that names the endpoint keeps naming it, and the endpoint is
    created again at once; the deployment it started is stopped with it."""
    privileges.guarded(cluster, "delete_endpoint", f"delete the inference endpoint [{inference_id}]",
                       lambda c: c.inference.delete(inference_id=inference_id, force=True),
                       ids={"inference_id": inference_id})


def create_endpoint(cluster: Cluster, model_id: str, task: str, start: StartOptions, options: EndpointOptions,
                    plan: str) -> str:
    """Create the endpoint (which starts its deployment), unless preflight found it already serving this model."""
    endpoint, inference_id = ENDPOINT_TASK[task], options.inference_id
    existing = _existing(cluster, inference_id)  # a replaced model's endpoints are gone by now
    if existing is not None and plan == "keep":
        return f"[{inference_id}] already serves [{model_id}] as {endpoint}"
    if existing is not None:
        delete_endpoint(cluster, inference_id)
    body = endpoint_body(model_id, start, options)
    privileges.guarded(cluster, "put_endpoint", f"create the inference endpoint [{inference_id}]", lambda c: c.options(
        request_timeout=start.timeout).inference.put(task_type=endpoint, inference_id=inference_id,
                                                     inference_config=body), ids={"inference_id": inference_id})
    return f"[{inference_id}] {endpoint} over [{model_id}], deployment [{inference_id}] started"


def _as_infer_answer(endpoint: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """The endpoint's first result in `_infer`'s shape, so one judgement serves both APIs."""
    results = answer.get(endpoint) or [{}]
    if endpoint == "rerank":
        return {"predicted_value": results[0].get("relevance_score")}
    return {"predicted_value": results[0].get("embedding")}


def endpoint_smoke(cluster: Cluster, inference_id: str, task: str,
                   samples: Sequence[Mapping[str, Any]]) -> list[SampleOutcome]:
    """Each sample through `POST _inference/<task>/<id>` (rerank: the sample's query against its text)."""
    endpoint, outcomes = ENDPOINT_TASK[task], []
    for sample in samples:
        given = sample.get("input", {})
        text = given.get("text", "")
        query = {"query": given["text_pair"]} if endpoint == "rerank" else {}
        answer = privileges.guarded(
            cluster, "endpoint_infer", f"run the inference endpoint [{inference_id}]", lambda c, t=text, q=query:
            c.options(request_timeout=60).inference.inference(task_type=endpoint, inference_id=inference_id,
                                                              input=[t], **q), ids={"inference_id": inference_id})
        verdict = judge(sample.get("expected", {}), _as_infer_answer(endpoint, answer))
        outcomes.append(SampleOutcome(text, verdict.ok, f"_inference: {verdict.detail}"))
    return outcomes
