"""The `_inference` API for the `elasticsearch` service over imported (eland-style) models: PUT, GET, POST, DELETE.

Written from Elasticsearch's inference plugin (x-pack/plugin/inference: TransportPutInferenceModelAction,
ElasticsearchInternalService, ElasticsearchInternalServiceSettings, ModelRegistry,
TransportDeleteInferenceEndpointAction, InferenceAction.Request, the result classes) and its REST tests
(CustomElandModelIT, ModelIdUniquenessIT); see README.md, "Inference endpoints". The service reaches the model
the way Elasticsearch's does, through the trained-model actions: PUT starts a deployment whose id is the
endpoint's (`_start` with `wait_for=started`), runs one validation inference, then stores the endpoint; POST sends
every input to that deployment's `_infer`; DELETE stops it. The stand-in dispatches those actions to its own
`_start`, `_infer` and `_stop` handlers, so their checks and answers are the same.

Endpoints are persisted in `inference_endpoints.json` in the data directory (Elasticsearch keeps them in the
`.inference` index).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config, errors
from .cluster import ClusterInfo
from .errors import EsError
from .models import Store, write_json
from .releases import Version
from .rest import Request, Response, Route, route

if TYPE_CHECKING:
    from .deployments import Deployments

_SINCE: Version = (8, 11, 0)  # the `_inference` API
_SERVICE_SINCE: Version = (8, 13, 0)  # the `elasticsearch` service with imported models
_ENDPOINTS_KEY_SINCE: Version = (8, 15, 0)  # `endpoints` + `inference_id` (before: `models` + `model_id`)
_CHUNKING_SINCE: Version = (8, 16, 0)
# ElasticsearchInternalService.inferenceConfigToTaskType, and the release each pair arrived in.
_TASK_FOR_CONFIG = {"text_embedding": ("text_embedding", (8, 13, 0)), "text_similarity": ("rerank", (8, 15, 0)),
                    "text_expansion": ("sparse_embedding", (8, 16, 0))}
_TASK_TYPES = ("text_embedding", "sparse_embedding", "rerank", "completion", "chat_completion", "any")
_RESERVED = (".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch", ".rerank-v1-elasticsearch")
_VALIDATION_INPUT, _VALIDATION_QUERY = "how big", "test query"  # SimpleServiceIntegrationValidator
_DEFAULT_CHUNKING = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}


def _internal(method: str, path: str, params: dict[str, str], body: Any = None, **path_params: str) -> Request:
    """A transport action's request, as the inference plugin sends it to the ML plugin."""
    raw = json.dumps(body).encode() if body is not None else b""
    return Request(method, path, path, params, {"content-type": "application/json"}, raw, dict(path_params))


class InferenceEndpoints:
    def __init__(self, data_dir: Path, store: Store, cluster: ClusterInfo, deployments: Deployments) -> None:
        self._file = data_dir / "inference_endpoints.json"
        self._lock = threading.Lock()
        self._endpoints: dict[str, dict[str, Any]] = (
            json.loads(self._file.read_text(encoding="utf-8")) if self._file.is_file() else {})
        self.store, self.cluster, self.deployments = store, cluster, deployments

    def routes(self) -> list[Route]:
        if self.cluster.release.version < _SINCE:
            return []
        return [
            route("PUT", "/_inference/{task_type}/{inference_id}", self.put, ("timeout",)),
            route("GET", "/_inference", self.get),
            route("GET", "/_inference/_all", self.get),
            route("GET", "/_inference/{inference_id}", self.get),
            route("GET", "/_inference/{task_type}/{inference_id}", self.get),
            route("POST", "/_inference/{inference_id}", self.infer, ("timeout",)),
            route("POST", "/_inference/{task_type}/{inference_id}", self.infer, ("timeout",)),
            route("DELETE", "/_inference/{inference_id}", self.delete, ("force", "dry_run")),
            route("DELETE", "/_inference/{task_type}/{inference_id}", self.delete, ("force", "dry_run")),
        ]

    def serving(self, model_id: str) -> list[str]:
        with self._lock:
            return sorted(i for i, e in self._endpoints.items() if e["service_settings"]["model_id"] == model_id)

    # --- PUT ------------------------------------------------------------------------------------------------

    def put(self, request: Request) -> Response:
        inference_id, task_type = request.path_params["inference_id"], request.path_params["task_type"]
        self._check_put_request(inference_id, task_type)
        body, _ = config.parse_json(request.body)
        service = body.get("service")
        if service is None:
            raise errors.bad_request("Inference endpoint configuration is missing the [service] setting")
        if service != "elasticsearch" or self.cluster.release.version < _SERVICE_SINCE:
            raise errors.bad_request(f"Unknown service [{service}]")
        if self.deployments.get(inference_id) is not None:
            raise errors.bad_request(f"Inference endpoint IDs must be unique. Requested inference endpoint ID "
                                     f"[{inference_id}] matches existing trained model ID(s) but must not.")
        with self._lock:
            if inference_id in self._endpoints:
                raise EsError(400, "resource_already_exists_exception",
                              f"Inference endpoint [{inference_id}] already exists")
        settings = self._service_settings(body.get("service_settings"))
        self._check_model(settings["model_id"], task_type)
        endpoint = self._start_and_validate(inference_id, task_type, settings)
        with self._lock:
            self._endpoints[inference_id] = endpoint
            write_json(self._file, self._endpoints)
        return Response(200, self._shown(inference_id, endpoint))

    def _check_put_request(self, inference_id: str, task_type: str) -> None:
        if task_type not in _TASK_TYPES:
            raise errors.illegal_argument(f"Unknown task_type [{task_type}]")
        if not config.ID_PATTERN.fullmatch(inference_id):  # MlStrings.isValidId
            raise errors.validation([f"Invalid inference_id; '{inference_id}' can contain lowercase alphanumeric "
                                     "(a-z and 0-9), hyphens or underscores; must start and end with alphanumeric"])
        if inference_id in _RESERVED:
            raise errors.bad_request(f"[{inference_id}] is a reserved inference ID. Cannot create a new inference "
                                     "endpoint with a reserved ID.")

    def _service_settings(self, given: Any) -> dict[str, Any]:
        """ElasticsearchInternalServiceSettings.fromMap (the stand-in reads the fields imported models use)."""
        settings = dict(given) if isinstance(given, dict) else {}
        if not isinstance(settings.get("model_id"), str):
            raise errors.validation(["Error parsing service settings, model_id must be provided"])
        threads = settings.get("num_threads")
        if not isinstance(threads, int) or threads < 1:
            raise errors.validation(["[service_settings] does not contain the required setting [num_threads]"
                                     if threads is None else "[num_threads] must be a positive integer"])
        allocations, adaptive = settings.get("num_allocations"), settings.get("adaptive_allocations")
        if allocations is None and adaptive is None:
            raise errors.validation(["[service_settings] does not contain one of the required settings "
                                     "[num_allocations, adaptive_allocations]"])
        if allocations is not None and (not isinstance(allocations, int) or allocations < 1):
            raise errors.validation(["[num_allocations] must be a positive integer"])
        return settings

    def _check_model(self, model_id: str, task_type: str) -> None:
        """The trained model exists and its inference config maps to the endpoint's task type."""
        model = self.store.get(model_id)
        if model is None:
            raise errors.model_not_found(model_id)
        kind = next(iter(model.config["inference_config"]))
        mapped, since = _TASK_FOR_CONFIG.get(kind, (None, None))
        if mapped is None or since is None or self.cluster.release.version < since:
            raise errors.bad_request(f"Deployed model [{model_id}] has type [{kind}] which does not map to any "
                                     "supported task types")
        if mapped != task_type:
            raise errors.bad_request(f"Deployed model [{model_id}] with type [{kind}] does not match the requested "
                                     f"task type [{task_type}]")

    def _start_and_validate(self, inference_id: str, task_type: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Start the deployment named after the endpoint, run the validation call, and build the endpoint."""
        model_id = settings["model_id"]
        params = {"deployment_id": inference_id, "wait_for": "started",
                  "threads_per_allocation": str(settings["num_threads"])}
        if settings.get("num_allocations") is not None:
            params["number_of_allocations"] = str(settings["num_allocations"])
        body = {"adaptive_allocations": settings["adaptive_allocations"]} if settings.get("adaptive_allocations") \
            else None
        self.deployments.start(_internal("POST", f"/_ml/trained_models/{model_id}/deployment/_start", params, body,
                                         model_id=model_id))
        endpoint: dict[str, Any] = {"task_type": task_type, "service": "elasticsearch",
                                    "service_settings": dict(settings)}
        try:
            answer = self._run(inference_id, endpoint, [_VALIDATION_INPUT], _VALIDATION_QUERY)
        except EsError:
            self._stop(inference_id)
            raise errors.bad_request("Could not complete inference endpoint creation as validation call to "
                                     "service threw an exception.") from None
        if task_type == "text_embedding":
            endpoint["service_settings"].update(similarity="cosine", element_type="float",
                                                dimensions=len(answer["text_embedding"][0]["embedding"]))
        if task_type == "rerank":
            endpoint["task_settings"] = {"return_documents": True}
        if task_type in ("text_embedding", "sparse_embedding") and self.cluster.release.version >= _CHUNKING_SINCE:
            endpoint["chunking_settings"] = dict(_DEFAULT_CHUNKING)
        return endpoint

    def _shown(self, inference_id: str, endpoint: dict[str, Any]) -> dict[str, Any]:
        """ModelConfigurations.toXContent: the id key was `model_id` before 8.15."""
        key = "inference_id" if self.cluster.release.version >= _ENDPOINTS_KEY_SINCE else "model_id"
        return {key: inference_id, **endpoint}

    # --- GET, DELETE ----------------------------------------------------------------------------------------

    def _require(self, request: Request) -> tuple[str, dict[str, Any]]:
        inference_id = request.path_params["inference_id"]
        with self._lock:
            endpoint = self._endpoints.get(inference_id)
        if endpoint is None:
            raise errors.not_found(f"Inference endpoint not found [{inference_id}]")
        wanted = request.path_params.get("task_type")
        if wanted not in (None, endpoint["task_type"]):
            raise errors.bad_request(f"Requested task type [{wanted}] does not match the inference endpoint's task "
                                     f"type [{endpoint['task_type']}]")
        return inference_id, endpoint

    def get(self, request: Request) -> Response:
        if request.path_params.get("inference_id") not in (None, "_all"):
            found = [self._require(request)]
        else:
            with self._lock:
                found = sorted(self._endpoints.items())
        key = "endpoints" if self.cluster.release.version >= _ENDPOINTS_KEY_SINCE else "models"
        return Response(200, {key: [self._shown(i, e) for i, e in found]})

    def delete(self, request: Request) -> Response:
        inference_id, _ = self._require(request)
        if request.flag("dry_run"):
            return Response(200, {"acknowledged": False, "pipelines": [], "indexes": []})
        self._stop(inference_id)
        with self._lock:
            self._endpoints.pop(inference_id, None)
            write_json(self._file, self._endpoints)
        if self.cluster.release.version < _ENDPOINTS_KEY_SINCE:
            return Response(200, {"acknowledged": True})
        return Response(200, {"acknowledged": True, "pipelines": [], "indexes": []})

    def _stop(self, inference_id: str) -> None:
        if self.deployments.get(inference_id) is not None:
            self.deployments.stop(_internal("POST", f"/_ml/trained_models/{inference_id}/deployment/_stop",
                                            {"force": "true"}, model_id=inference_id))

    # --- POST -----------------------------------------------------------------------------------------------

    def infer(self, request: Request) -> Response:
        inference_id, endpoint = self._require(request)
        body, _ = config.parse_json(request.body)
        inputs = body.get("input")
        if inputs is None:
            raise errors.validation(["Field [input] cannot be null"])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        query, task_type = body.get("query"), endpoint["task_type"]
        if task_type == "rerank" and not query:
            raise errors.validation([f"Field [query] cannot be null for task type [{task_type}]"])
        if task_type != "rerank" and query is not None:
            raise errors.validation([f"Field [query] cannot be specified for task type [{task_type}]"])
        return Response(200, self._run(inference_id, endpoint, inputs, query))

    def _run(self, inference_id: str, endpoint: dict[str, Any], inputs: list[str], query: str | None) -> Any:
        """All inputs in one `_infer` on the endpoint's deployment; the answer in the endpoint task's shape."""
        model = self.store.require(endpoint["service_settings"]["model_id"])
        field = model.config["input"]["field_names"][0]
        task_type = endpoint["task_type"]
        update = {"text_similarity": {"text": query}} if task_type == "rerank" else None
        infer_body: dict[str, Any] = {"docs": [{field: text} for text in inputs]}
        if update:
            infer_body["inference_config"] = update
        answer = self.deployments.infer(_internal("POST", f"/_ml/trained_models/{inference_id}/_infer", {},
                                                  infer_body, model_id=inference_id)).body["inference_results"]
        if task_type == "text_embedding":
            return {"text_embedding": [{"embedding": r["predicted_value"]} for r in answer]}
        if task_type == "sparse_embedding":
            return {"sparse_embedding": [{"is_truncated": bool(r.get("is_truncated", False)),
                                          "embedding": r["predicted_value"]} for r in answer]}
        ranked = sorted(range(len(inputs)), key=lambda i: -float(answer[i]["predicted_value"]))
        return {"rerank": [{"index": i, "relevance_score": float(answer[i]["predicted_value"]), "text": inputs[i]}
                           for i in ranked]}
