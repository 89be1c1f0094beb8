"""Deployments: `_start`, `_stop`, `_update`, `cache/_clear`, `_stats` and `_infer`.

Owns the deployment lifecycle the way Elasticsearch exposes it: `_start` validates its parameters,
checks the stored parts, hands the reassembled definition to the "native process" (native.py) on
a background thread and waits for the requested state, answering 408 on timeout (the start goes
on) or Elasticsearch's node-failure 500 (the failed deployment is removed). Started deployments
are persisted and come back as started after a restart; their module is loaded again on first use.
`_stop`, `_update` and `cache/_clear` address a deployment by its deployment id only; `_start`,
`_infer` and `_stats` also resolve model ids and aliases (aliases.py); the deprecated `deployment/_infer`
route takes one document and answers its result flat, with the deprecation warning. The node's counters and
the inference cache are in deployment_stats.py, which also shapes `_stats`.
What a `started` deployment proves about the emulated release, and what it cannot (the host's torch is
newer than any cluster's libtorch), is stated in native.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import config, deployment_stats, errors, inference, native
from .aliases import ModelAliases
from .cluster import ClusterInfo
from .deployment_stats import NodeCounters, byte_size_text, parse_byte_size
from .errors import EsError
from .faults import FaultPlan
from .models import Model, Store, expand_ids_missing, simple_match
from .releases import Version
from .rest import Request, Response, Route, route
from .tokenize import INPUT_NAMES, TextTokenizer

_WAIT_STATES = ("starting", "started", "fully_allocated")
_PRIORITY_ENUM = "org.elasticsearch.xpack.core.ml.inference.assignment.Priority"
# Elasticsearch PR #115041 (backported to 8.x, i.e. 8.17): default queue_capacity 1024 -> 10000, maximum 1M -> 100k.
_QUEUE_10K_SINCE: Version = (8, 17, 0)
# TrainedModelAssignment.toXContent writes `adaptive_allocations` (null when unset) from adaptive allocations' release.
_ADAPTIVE_SINCE: Version = (8, 15, 0)
_DEPRECATED_INFER = ("[POST /_ml/trained_models/{model_id}/deployment/_infer] is deprecated! Use "
                     "[POST /_ml/trained_models/{model_id}/_infer] instead.")
_STOP_PARSER = "cluster:admin/xpack/ml/trained_models/deployment/stop"
_UPDATE_PARSER = "cluster:admin/xpack/ml/trained_models/deployment/update"
_RESET = "reset"  # `"adaptive_allocations": null` in an update: AdaptiveAllocationsSettings.RESET_PLACEHOLDER


@dataclass
class Deployment:
    deployment_id: str
    model_id: str
    params: dict[str, Any]
    start_time: int
    adaptive: dict[str, Any] | None = None
    state: str = "starting"
    reason: str | None = None
    loaded: native.Loaded | None = None
    tokenizer: TextTokenizer | None = None
    done: threading.Event = field(default_factory=threading.Event)
    counters: NodeCounters = field(init=False)

    def __post_init__(self) -> None:
        # TaskParams: without `cache_size` the cache is as large as the model.
        self.params.setdefault("cache_size", byte_size_text(int(self.params.get("model_bytes", 0))))
        self.counters = NodeCounters(parse_byte_size(self.params["cache_size"], "cache_size")[0])

    @property
    def allocations(self) -> int:
        return int(self.params["number_of_allocations"])

    def record(self) -> dict[str, Any]:
        return {"deployment_id": self.deployment_id, "model_id": self.model_id, "params": self.params,
                "start_time": self.start_time, "adaptive_allocations": self.adaptive}


class Deployments:
    def __init__(self, store: Store, cluster: ClusterInfo, faults: FaultPlan, aliases: ModelAliases) -> None:
        self.store = store
        self.cluster = cluster
        self.faults = faults
        self.aliases = aliases
        self._lock = threading.Lock()
        self._by_id: dict[str, Deployment] = {}
        for saved in store.saved_deployments():
            restored = Deployment(saved["deployment_id"], saved["model_id"], saved["params"], saved["start_time"],
                                  adaptive=saved.get("adaptive_allocations"), state="started")
            restored.done.set()
            self._by_id[restored.deployment_id] = restored

    def routes(self) -> list[Route]:
        base = "/_ml/trained_models"
        start_params = ("cache_size", "deployment_id", "number_of_allocations", "priority", "queue_capacity",
                        "threads_per_allocation", "timeout", "wait_for")
        return [
            route("POST", base + "/{model_id}/deployment/_start", self.start, start_params, licensed=True),
            route("POST", base + "/{model_id}/deployment/_stop", self.stop,
                  ("allow_no_match", "force", "finish_pending_work")),
            route("POST", base + "/{model_id}/deployment/_update", self.update,
                  ("number_of_allocations", "timeout", "master_timeout")),
            route("POST", base + "/{model_id}/deployment/cache/_clear", self.clear_cache),
            route("GET", base + "/_stats", self.stats, ("allow_no_match", "from", "size")),
            route("GET", base + "/{model_id}/_stats", self.stats, ("allow_no_match", "from", "size")),
            route("POST", base + "/{model_id}/_infer", self.infer, ("timeout",), licensed=True),
            route("POST", base + "/{model_id}/deployment/_infer", self.deprecated_infer, ("timeout",), licensed=True),
        ]

    def all(self) -> list[Deployment]:
        with self._lock:
            return sorted(self._by_id.values(), key=lambda d: d.deployment_id)

    def get(self, deployment_id: str) -> Deployment | None:
        with self._lock:
            return self._by_id.get(deployment_id)

    def for_model(self, model_id: str) -> list[Deployment]:
        return [d for d in self.all() if d.model_id == model_id]

    def _remove(self, deployment: Deployment) -> None:
        with self._lock:
            self._by_id.pop(deployment.deployment_id, None)
        self.store.remove_deployment(deployment.deployment_id)

    def stop_model(self, model_id: str) -> None:
        for deployment in self.for_model(model_id):
            self._remove(deployment)

    # --- _start -------------------------------------------------------------------------------

    def _start_params(self, request: Request, model_id: str,
                      adaptive: dict[str, Any] | None) -> tuple[dict[str, Any], float, str, str]:
        """RestStartTrainedModelDeploymentAction's parameters, then StartTrainedModelDeploymentAction.Request.validate
        (every problem, in its order)."""
        wait_for = request.params.get("wait_for", "started")
        if wait_for.lower() not in ("starting", "started", "fully_allocated", "stopping", "failed"):
            enum = "org.elasticsearch.xpack.core.ml.inference.assignment.AllocationStatus.State"
            raise errors.illegal_argument(f"No enum constant {enum}.{wait_for.upper()}")
        timeout, timeout_text = request.time_value("timeout", 30.0)
        priority = request.params.get("priority", "normal")
        if priority.lower() not in ("normal", "low"):  # Priority.fromString: Enum.valueOf of the upper-cased text
            raise errors.illegal_argument(f"No enum constant {_PRIORITY_ENUM}.{priority.upper()}")
        priority = priority.lower()
        allocations = request.integer("number_of_allocations")
        threads = request.integer("threads_per_allocation", 1)
        queue = request.integer("queue_capacity", 10_000 if self._queue_10k() else 1024)
        assert threads is not None and queue is not None
        problems = self._start_problems(wait_for.lower(), allocations, threads, queue, timeout, priority, adaptive)
        if problems:
            raise errors.validation(problems)
        if allocations is None:  # Request.computeNumberOfAllocations
            low = (adaptive or {}).get("min_number_of_allocations")
            allocations = low if low not in (None, -1, 0) else 1
        params = {"threads_per_allocation": threads, "number_of_allocations": allocations, "queue_capacity": queue,
                  "priority": priority}
        if "cache_size" in request.params:
            params["cache_size"] = parse_byte_size(request.params["cache_size"], "cache_size")[1]
        deployment_id = request.params.get("deployment_id", model_id)
        return params, timeout, timeout_text, deployment_id

    def _queue_10k(self) -> bool:
        return self.cluster.release.version >= _QUEUE_10K_SINCE

    def _start_problems(self, wait_for: str, allocations: int | None, threads: int, queue: int, timeout: float,
                        priority: str, adaptive: dict[str, Any] | None) -> list[str]:
        """StartTrainedModelDeploymentAction.Request.validate, in its order."""
        problems = []
        if wait_for not in _WAIT_STATES:
            problems.append(f"invalid [wait_for] state [{wait_for}]; must be one of [{', '.join(_WAIT_STATES)}")
        if allocations is not None and allocations < 1:
            problems.append("[number_of_allocations] must be a positive integer")
        if allocations is not None and adaptive is not None and adaptive.get("enabled") is True:
            problems.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
        if threads < 1:
            problems.append("[threads_per_allocation] must be a positive integer")
        problems += deployment_stats.adaptive_problems(adaptive) if adaptive is not None else []
        if threads > 32 or threads < 1 or threads & (threads - 1):
            problems.append("[threads_per_allocation] must be a power of 2 less than or equal to 32")
        maximum = 100_000 if self._queue_10k() else 1_000_000
        if queue < 1:
            problems.append("[queue_capacity] must be a positive integer")
        if queue > maximum:
            problems.append(f"[queue_capacity] must be less than {maximum}")
        if timeout <= 0:
            problems.append("[timeout] must be positive")
        if priority == "low" and allocations is not None and allocations > 1:
            problems.append("[number_of_allocations] must be 1 when [priority] is low")
        if priority == "low" and threads > 1:
            problems.append("[threads_per_allocation] must be 1 when [priority] is low")
        return problems

    def _body_params(self, request: Request, parser: str, fields: dict[str, str]) -> dict[str, Any]:
        """Parameters may also come in the body (the 9.x client sends some there); URL ones win."""
        if not request.body.strip():
            return {}
        body, locations = config.parse_json(request.body)
        config.check_fields(parser, body, fields, locations)
        for name, value in body.items():
            if name not in request.params and not isinstance(value, dict):
                request.params[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return body

    def start(self, request: Request) -> Response:
        path_id = request.path_params["model_id"]
        body = self._body_params(request, "start_trained_model_deployment", {
            "model_id": "string", "deployment_id": "string", "timeout": "string", "wait_for": "string",
            "number_of_allocations": "int", "threads_per_allocation": "int", "queue_capacity": "int",
            "cache_size": "value", "priority": "string", "adaptive_allocations": "object"})
        adaptive = body.get("adaptive_allocations")
        params, timeout, timeout_text, deployment_id = self._start_params(request, path_id, adaptive)
        wait_for = request.params.get("wait_for", "started").lower()
        self._refuse_taken(deployment_id)
        model = self._model_to_deploy(path_id, deployment_id)
        params["model_bytes"] = self.store.check_definition(model)
        kind = next(iter(next(iter(model.config["inference_config"].values()))["tokenization"]))
        if kind not in INPUT_NAMES:  # Elasticsearch would start it; the stand-in cannot tokenize for it
            raise errors.not_emulated(f"deployments of models with the [{kind}] tokenization")
        deployment = Deployment(deployment_id, model.model_id, params, int(time.time() * 1000), adaptive=adaptive)
        self._launch(deployment, model)
        if wait_for != "starting" and not deployment.done.wait(timeout):
            raise EsError(408, "model_deployment_timeout_exception",
                          f"Timed out after [{timeout_text}] waiting for trained model deployment [{deployment_id}] "
                          "to start. Use the trained model stats API to track the state of the deployment and try "
                          "again once it has started.")
        if deployment.state == "failed":
            self._remove(deployment)
            raise EsError(500, "status_exception",
                          "Could not start trained model deployment, the following nodes failed with errors "
                          f"[{{{self.cluster.node_id}={deployment.reason}}}]")
        return Response(200, {"assignment": self._assignment(deployment)})

    def _model_to_deploy(self, path_id: str, deployment_id: str) -> Model:
        """TransportStartTrainedModelDeploymentAction: GetTrainedModelsAction with the path id (an alias finds its
        model; nothing found is expandIds' 404), the PyTorch check, then a deployment id naming another model."""
        models = self.store.resolve(path_id, True, self.aliases.table(), missing=expand_ids_missing)
        if len(models) > 1:
            ids = ", ".join(m.model_id for m in models)  # a Java List printed inside the message's brackets
            raise errors.bad_request(f"cannot deploy more than one model at the same time; [{path_id}] matches "
                                     f"models [[{ids}]]")
        if not models:  # a pattern matching nothing: Elasticsearch takes results().get(0) of an empty list
            raise errors.not_emulated(f"a _start whose model id [{path_id}] is a pattern matching no model")
        model = models[0]
        if model.config.get("model_type") != "pytorch":
            raise errors.bad_request(f"model [{model.model_id}] of type [{model.config.get('model_type')}] cannot be "
                                     "deployed. Only PyTorch models can be deployed")
        if deployment_id != path_id and self._names_a_model(deployment_id):
            raise errors.bad_request(
                f"Deployment id [{deployment_id}] is the same as an another model which is not the model being "
                "deployed. Deployment id can be the same as the model being deployed but cannot match a different model"
            )
        return model

    def _refuse_taken(self, deployment_id: str) -> None:
        if self.get(deployment_id) is not None:
            raise errors.bad_request(
                "Could not start model deployment because an existing deployment with the same id "
                f"[{deployment_id}] exist"
            )

    def _names_a_model(self, deployment_id: str) -> bool:
        """GetTrainedModelsAction with the deployment id finds a model (by id, alias or wildcard)."""
        try:
            return bool(self.store.resolve(deployment_id, True, self.aliases.table()))
        except EsError:
            return False

    def _launch(self, deployment: Deployment, model: Model) -> None:
        with self._lock:
            # Checked again under the lock: two concurrent starts of one id must not both win.
            if deployment.deployment_id in self._by_id:
                raise errors.bad_request(
                    "Could not start model deployment because an existing deployment with the same id "
                    f"[{deployment.deployment_id}] exist"
                )
            self._by_id[deployment.deployment_id] = deployment
        threading.Thread(target=self._load, args=(deployment, model), daemon=True).start()

    def _load(self, deployment: Deployment, model: Model) -> None:
        """The node side of a start: what pytorch_inference does, then the routing state."""
        self.faults.hold_start(deployment.model_id, deployment.deployment_id)  # the `pause-start` fault plan
        try:
            if self.faults.start_delay:
                time.sleep(self.faults.start_delay)
            self._attach(deployment, model)
            deployment.state = "started"
            with self._lock:
                # A deployment stopped (or its model deleted) while loading must not come back.
                if self._by_id.get(deployment.deployment_id) is deployment:
                    self.store.save_deployment(deployment.record())
        except native.NativeFailure as exc:
            deployment.state, deployment.reason = "failed", str(exc)
        except Exception as exc:  # the node reports whatever broke; the stand-in must not hang
            deployment.state, deployment.reason = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            deployment.done.set()

    def _attach(self, deployment: Deployment, model: Model) -> None:
        if not model.has_vocabulary:
            raise native.NativeFailure(
                f"[{model.model_id}] Could not find vocabulary document [{model.model_id}_vocabulary] for model "
            )
        wanted = model.config.get("platform_architecture")
        if wanted is not None and wanted != self.cluster.ml_platform:
            # DeploymentManager: MlPlatformArchitecturesUtil.verifyMlNodesAndModelArchitectures, one ML node.
            raise native.NativeFailure(
                f"The model being deployed ([{model.model_id}]) is platform specific and incompatible with ML nodes "
                f"in the cluster; expected [{wanted}]; but was [{self.cluster.ml_platform}]")
        deployment.loaded = native.start(self.store.definition(model), self.cluster.release)
        task_settings = next(iter(model.config["inference_config"].values()))
        kind, options = next(iter(task_settings["tokenization"].items()))
        deployment.tokenizer = TextTokenizer(kind, options, model.vocabulary())

    def _assignment(self, deployment: Deployment) -> dict[str, Any]:
        """TrainedModelAssignment.toXContent as `_start` and `_update` answer it."""
        state = deployment.state
        routing: dict[str, Any] = {"current_allocations": deployment.allocations if state == "started" else 0,
                                   "target_allocations": deployment.allocations,
                                   "routing_state": state, "reason": deployment.reason or ""}
        assignment = {"task_parameters": _task_parameters(deployment),
                      "routing_table": {self.cluster.node_id: routing},
                      "assignment_state": state, "start_time": _iso(deployment.start_time),
                      "max_assigned_allocations": deployment.allocations}
        if deployment.adaptive is not None:
            assignment["adaptive_allocations"] = deployment_stats.adaptive_json(deployment.adaptive)
        elif self.cluster.release.version >= _ADAPTIVE_SINCE:
            assignment["adaptive_allocations"] = None  # builder.field(name, (ToXContent) null) writes a null
        return assignment

    # --- _stop, _update, cache/_clear: by deployment id only -----------------------------------

    def stop(self, request: Request) -> Response:
        """TransportStopTrainedModelDeploymentAction: a deployment id, never a model id or an alias."""
        target = request.path_params["model_id"]
        body = self._body_params(request, _STOP_PARSER, {"model_id": "string", "allow_no_match": "bool",
                                                         "force": "bool", "finish_pending_work": "bool"})
        if body.get("model_id", target) != target:
            raise errors.illegal_argument(f"Inconsistent model_id; '{body['model_id']}' specified in the body "
                                          f"differs from '{target}' specified as a URL argument")
        deployment = self.get(target)
        if deployment is None:
            if not request.flag("allow_no_match", True):
                raise errors.not_found(f"No known model deployment with id [{target}]")
            return Response(200, {"stopped": True})
        self._remove(deployment)
        return Response(200, {"stopped": True})

    def update(self, request: Request) -> Response:
        """UpdateTrainedModelDeploymentAction: request validation, then TrainedModelAssignmentClusterService."""
        deployment_id = request.path_params["model_id"]
        allocations, adaptive_update = self._update_request(request, deployment_id)
        problems = []
        if allocations is not None and allocations < 1:
            problems.append("[number_of_allocations] must be a positive integer")
        if allocations is not None and isinstance(adaptive_update, dict) and adaptive_update.get("enabled") is True:
            problems.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
        if isinstance(adaptive_update, dict):
            problems += deployment_stats.adaptive_problems(adaptive_update)
        if problems:
            raise errors.validation(problems)
        deployment = self.get(deployment_id)
        if deployment is None:
            raise errors.not_found(f"No known model deployment with id [{deployment_id}]")
        merged = _merge_adaptive(deployment.adaptive, adaptive_update)
        if merged is not None:
            if merged.get("enabled") is True and allocations is not None:
                raise EsError(400, "validation_exception", "Validation Failed: 1: [number_of_allocations] cannot be "
                                                           "set if adaptive allocations is enabled;")
            if deployment_stats.adaptive_problems(merged):
                raise errors.validation(deployment_stats.adaptive_problems(merged))
        changes = ((allocations is not None and allocations != deployment.allocations)
                   or (adaptive_update is not None and adaptive_update != deployment.adaptive))
        if changes:
            if deployment.state != "started":
                raise errors.conflict("cannot update deployment that is not in [started] state")
            if allocations is not None:
                deployment.params["number_of_allocations"] = allocations
            deployment.adaptive = merged
            with self._lock:
                if self._by_id.get(deployment_id) is deployment:
                    self.store.save_deployment(deployment.record())
        return Response(200, {"assignment": self._assignment(deployment)})

    def _update_request(self, request: Request, deployment_id: str) -> tuple[int | None, Any]:
        """RestUpdateTrainedModelDeploymentAction: `number_of_allocations` in the URL, else the body."""
        if "number_of_allocations" in request.params:
            return request.integer("number_of_allocations"), None
        body, locations = config.parse_json(request.body)
        adaptive: Any = None
        if isinstance(body, dict) and "adaptive_allocations" in body:
            adaptive = body.pop("adaptive_allocations")
            adaptive = _RESET if adaptive is None else deployment_stats.parse_adaptive(
                adaptive, locations, _UPDATE_PARSER)
        config.check_fields(_UPDATE_PARSER, body, {"model_id": "string", "number_of_allocations": "int",
                                                   "timeout": "string"}, locations)
        if body.get("model_id", deployment_id) != deployment_id:
            raise errors.bad_request(f"Inconsistent model_id; '{body['model_id']}' specified in the body differs "
                                     f"from '{deployment_id}' specified as a URL argument")
        allocations = body.get("number_of_allocations")
        return (None if allocations is None else int(allocations)), adaptive

    def clear_cache(self, request: Request) -> Response:
        """TransportClearDeploymentCacheAction: empties the deployment's inference cache; counters stay."""
        deployment_id = request.path_params["model_id"]
        deployment = self.get(deployment_id)
        if deployment is None:
            raise errors.not_found(f"No known model deployment with id [{deployment_id}]")
        deployment.counters.clear_cache()
        return Response(200, {"cleared": True})

    # --- _stats --------------------------------------------------------------------------------

    def stats(self, request: Request) -> Response:
        """TransportGetTrainedModelsStatsAction: `count` is the number of models; one entry per deployment."""
        expression = request.path_params.get("model_id", "_all")
        deployments = self.all()
        matches = _ids_matcher(expression)
        matched_ids = {d.deployment_id for d in deployments if matches(d.deployment_id)}
        tokens = [t.strip() for t in expression.split(",") if t.strip()]
        if tokens not in ([], ["_all"], ["*"]):
            # A deployment id finds the model it runs.
            used = {d.model_id for d in deployments if d.deployment_id in matched_ids}
            expression = ",".join(sorted({*tokens, *used}))
        models = self.store.resolve(expression, request.flag("allow_no_match", True), self.aliases.table(),
                                    matched_ids, missing=expand_ids_missing)
        start = request.integer("from", 0) or 0
        size = request.integer("size", 100)
        page = models[start:start + (100 if size is None else size)]
        # Deployment stats are fetched for deployments whose deployment id or model id the request names as
        # given: a model reached through an alias shows no deployment entries (Elasticsearch's behaviour).
        shown = [d for d in deployments if matches(d.deployment_id) or matches(d.model_id)]
        entries = []
        for model in page:
            entries += deployment_stats.model_entries(model, [d for d in deployments if d.model_id == model.model_id],
                                                      shown, self.cluster)
        return Response(200, {"count": len(models), "trained_model_stats": entries})

    # --- _infer --------------------------------------------------------------------------------

    def _deployment_for(self, target: str) -> tuple[Model | None, Deployment | None]:
        """TransportInternalInferModelAction: alias to model; a deployment by that id, else one of the model's."""
        concrete = self.aliases.resolve(target)
        deployment = self.get(concrete)
        if deployment is None:
            rank = {"started": 0, "starting": 1, "stopping": 2, "failed": 3}
            candidates = sorted(self.for_model(concrete), key=lambda d: rank.get(d.state, 4))
            deployment = candidates[0] if candidates else None
        return self.store.get(deployment.model_id if deployment else concrete), deployment

    def infer(self, request: Request) -> Response:
        target = request.path_params["model_id"]
        model, deployment = self._deployment_for(target)
        if model is None:
            raise errors.model_not_found(target)
        if deployment is None:
            if model.config.get("model_type") != "pytorch":
                raise errors.not_emulated(f"inference with [{model.model_id}] (a {model.config.get('model_type')} "
                                          "model, run in the JVM, not by a deployment)")
            raise errors.conflict(f"Model [{target}] must be deployed to use. Please deploy with the start trained "
                                  "model deployment API.")
        if deployment.state in ("stopping", "failed"):
            raise errors.conflict(f"Trained model [{deployment.deployment_id}] is [{deployment.state}]")
        if deployment.state != "started":
            raise errors.conflict(f"Trained model deployment [{target}] is not allocated to any nodes")
        body, locations = config.parse_json(request.body)
        config.check_fields("infer_trained_model_request", body, {"docs": "array", "inference_config": "object"},
                            locations)
        docs = body.get("docs") or []
        if not docs:
            raise errors.validation(["at least one document is required"])
        return Response(200, {"inference_results": self._run(deployment, model, body, docs)})

    def deprecated_infer(self, request: Request) -> Response:
        """RestInferTrainedModelDeploymentAction: a deprecated route (its warning on every answer), a body required,
        one document at most, then the `_infer` action; the one result is answered flat
        (InferTrainedModelDeploymentAction.Response writes results.get(0) as the whole object)."""
        warnings = []
        if self.cluster.release.version >= (8, 3, 0):  # deprecated once `_infer` took PyTorch models
            warnings.append(("Warning", f'299 Elasticsearch-{self.cluster.release.number}-{"0" * 40} '
                                        f'"{_DEPRECATED_INFER}"'))
        try:
            if not request.body.strip():
                raise errors.bad_request("requires body")
            body, locations = config.parse_json(request.body)
            config.check_fields("infer_trained_model_request", body, {"docs": "array", "inference_config": "object"},
                                locations)
            if len(body.get("docs") or []) > 1:
                raise EsError(400, "validation_exception",
                              "Validation Failed: 1: multiple documents are not supported;")
            response = self.infer(request)
        except EsError as exc:
            exc.headers.extend(warnings)
            raise
        response.body = response.body["inference_results"][0]
        response.headers.extend(warnings)
        return response

    def _run(self, deployment: Deployment, model: Model, body: dict[str, Any],
             docs: list[Any]) -> list[dict[str, Any]]:
        if deployment.loaded is None:  # restored after a restart: the native process loads it again
            try:
                self._attach(deployment, model)
            except native.NativeFailure as exc:
                raise EsError(500, "status_exception", f"Error in inference process: [{exc}]") from exc
        if deployment.loaded is None or deployment.loaded.module is None:
            raise errors.not_emulated("inference without torch installed on the host")
        task, settings = next(iter(model.config["inference_config"].items()))
        update = next(iter((body.get("inference_config") or {}).items()), None)
        inference.apply_update(task, settings, update)  # the request's update applies before any document is read
        field_name = model.config["input"]["field_names"][0]
        module = deployment.counters.wrap(inference.Native(deployment.loaded.module))
        assert deployment.tokenizer is not None
        return [inference.run(module, deployment.tokenizer, task, settings, _input_text(doc, field_name), update)
                for doc in docs]


def _task_parameters(deployment: Deployment) -> dict[str, Any]:
    """StartTrainedModelDeploymentAction.TaskParams.toXContent, in its order."""
    params = deployment.params
    shown = {"model_id": deployment.model_id, "deployment_id": deployment.deployment_id,
             "model_bytes": params.get("model_bytes", 0), "threads_per_allocation": params["threads_per_allocation"],
             "number_of_allocations": params["number_of_allocations"], "queue_capacity": params["queue_capacity"],
             "cache_size": params["cache_size"], "priority": params["priority"]}
    return shown | {"per_deployment_memory_bytes": 0, "per_allocation_memory_bytes": 0}


def _input_text(doc: Any, field_name: str) -> str:
    """NlpInferenceInput.extractInput: the field by dotted path; absent or null, or not a string, is refused."""
    value = _extract_value(doc, field_name.split("."))
    if value is None:
        raise errors.bad_request(f"Input field [{field_name}] does not exist in the source document")
    if not isinstance(value, str):
        raise errors.bad_request(f"Input value [{_java_string(value)}] for field [{field_name}] must be a string")
    return value


def _extract_value(node: Any, path: list[str]) -> Any:
    """XContentMapValues.extractValue: a dotted path may cross objects or name a key that itself holds dots."""
    if not path:
        return node
    if not isinstance(node, dict):
        return None
    for end in range(1, len(path) + 1):
        key = ".".join(path[:end])
        if key in node:
            found = _extract_value(node[key], path[end:])
            if found is not None:
                return found
    return None


def _java_string(value: Any) -> str:
    """How Java's toString prints a parsed JSON value inside Elasticsearch's message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_string(v)}" for k, v in value.items()) + "}"
    return str(value)


def _ids_matcher(expression: str) -> Any:
    """ExpandedIdsMatcher.SimpleIdsMatcher: `_all`/`*` match everything, else any token (wildcards allowed)."""
    tokens = [t.strip() for t in expression.split(",") if t.strip()]
    if tokens in ([], ["_all"], ["*"]):
        return lambda _id: True
    return lambda candidate: any(simple_match(t, candidate) if "*" in t else t == candidate for t in tokens)


def _merge_adaptive(original: dict[str, Any] | None, update: Any) -> dict[str, Any] | None:
    """AdaptiveAllocationsSettings.merge as TrainedModelAssignmentClusterService applies an update."""
    if update is None:
        return original
    if update == _RESET:
        return None
    if original is None:
        return dict(update)
    merged = dict(original)
    if update.get("enabled") is not None:
        merged["enabled"] = update["enabled"]
    for name in ("min_number_of_allocations", "max_number_of_allocations"):
        if update.get(name) == -1:
            merged.pop(name, None)
        elif update.get(name) is not None:
            merged[name] = update[name]
    return merged


def _iso(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis / 1000)) + f".{millis % 1000:03d}Z"
