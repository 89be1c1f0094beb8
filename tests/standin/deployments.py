"""Deployments: `_start`, `_stop`, `_stats` and `_infer`.

Owns the deployment lifecycle the way Elasticsearch exposes it: `_start` validates its parameters,
checks the stored parts, hands the reassembled definition to the "native process" (native.py) on
a background thread and waits for the requested state, answering 408 on timeout (the start goes
on) or Elasticsearch's node-failure 500 (the failed deployment is removed). Started deployments
are persisted and come back as started after a restart; their module is loaded again on first use.
What a `started` deployment proves about the emulated release, and what it cannot (the host's torch is
newer than any cluster's libtorch), is stated in native.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import config, errors, inference, native
from .cluster import ClusterInfo
from .errors import EsError
from .faults import FaultPlan
from .models import Model, Store
from .rest import Request, Response, Route, route
from .tokenize import TextTokenizer

_WAIT_STATES = ("starting", "started", "fully_allocated")


@dataclass
class Deployment:
    deployment_id: str
    model_id: str
    params: dict[str, Any]
    start_time: int
    state: str = "starting"
    reason: str | None = None
    loaded: native.Loaded | None = None
    tokenizer: TextTokenizer | None = None
    inference_count: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def record(self) -> dict[str, Any]:
        return {"deployment_id": self.deployment_id, "model_id": self.model_id, "params": self.params,
                "start_time": self.start_time}


class Deployments:
    def __init__(self, store: Store, cluster: ClusterInfo, faults: FaultPlan) -> None:
        self.store = store
        self.cluster = cluster
        self.faults = faults
        self._lock = threading.Lock()
        self._by_id: dict[str, Deployment] = {}
        for saved in store.saved_deployments():
            restored = Deployment(saved["deployment_id"], saved["model_id"], saved["params"],
                                  saved["start_time"], state="started")
            restored.done.set()
            self._by_id[restored.deployment_id] = restored

    def routes(self) -> list[Route]:
        base = "/_ml/trained_models"
        start_params = ("cache_size", "deployment_id", "number_of_allocations", "priority", "queue_capacity",
                        "threads_per_allocation", "timeout", "wait_for")
        return [
            route("POST", base + "/{model_id}/deployment/_start", self.start, start_params, licensed=True),
            route("POST", base + "/{model_id}/deployment/_stop", self.stop, ("allow_no_match", "force")),
            route("GET", base + "/_stats", self.stats, ("allow_no_match", "from", "size")),
            route("GET", base + "/{model_id}/_stats", self.stats, ("allow_no_match", "from", "size")),
            route("POST", base + "/{model_id}/_infer", self.infer, ("timeout",), licensed=True),
            route("POST", base + "/{model_id}/deployment/_infer", self.infer, ("timeout",), licensed=True),
        ]

    def for_model(self, model_id: str) -> list[Deployment]:
        with self._lock:
            return [d for d in self._by_id.values() if d.model_id == model_id]

    def _remove(self, deployment: Deployment) -> None:
        with self._lock:
            self._by_id.pop(deployment.deployment_id, None)
        self.store.remove_deployment(deployment.deployment_id)

    def stop_model(self, model_id: str) -> None:
        for deployment in self.for_model(model_id):
            self._remove(deployment)

    # --- _start -------------------------------------------------------------------------------

    def _start_params(self, request: Request, model_id: str) -> tuple[dict[str, Any], float, str, str]:
        wait_for = request.params.get("wait_for", "started")
        if wait_for.lower() not in ("starting", "started", "fully_allocated", "stopping", "failed"):
            enum = "org.elasticsearch.xpack.core.ml.inference.assignment.AllocationStatus.State"
            raise errors.illegal_argument(f"No enum constant {enum}.{wait_for.upper()}")
        timeout, timeout_text = request.time_value("timeout", 30.0)
        priority = request.params.get("priority", "normal")
        if priority not in ("normal", "low"):
            raise errors.illegal_argument(f"Invalid priority [{priority}]")
        allocations = request.integer("number_of_allocations", 1)
        threads = request.integer("threads_per_allocation", 1)
        queue = request.integer("queue_capacity", 1024)
        assert allocations is not None and threads is not None and queue is not None
        problems = []
        if wait_for.lower() not in _WAIT_STATES:
            problems.append(f"invalid [wait_for] state [{wait_for.lower()}]; must be one of [{', '.join(_WAIT_STATES)}")
        if allocations < 1:
            problems.append("[number_of_allocations] must be a positive integer")
        if threads < 1:
            problems.append("[threads_per_allocation] must be a positive integer")
        elif threads > 32 or threads & (threads - 1):
            problems.append("[threads_per_allocation] must be a power of 2 less than or equal to 32")
        if queue < 1:
            problems.append("[queue_capacity] must be a positive integer")
        elif queue > 1_000_000:
            problems.append("[queue_capacity] must be less than 1000000")
        if timeout <= 0:
            problems.append("[timeout] must be positive")
        if priority == "low" and allocations != 1:
            problems.append("[number_of_allocations] must be 1 when [priority] is low")
        if priority == "low" and threads != 1:
            problems.append("[threads_per_allocation] must be 1 when [priority] is low")
        if problems:
            raise errors.validation(problems)
        params = {"number_of_allocations": allocations, "threads_per_allocation": threads,
                  "queue_capacity": queue, "priority": priority}
        if "cache_size" in request.params:
            params["cache_size"] = request.params["cache_size"]
        deployment_id = request.params.get("deployment_id", model_id)
        return params, timeout, timeout_text, deployment_id

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
        model_id = request.path_params["model_id"]
        body = self._body_params(request, "start_trained_model_deployment", {
            "model_id": "string", "deployment_id": "string", "timeout": "string", "wait_for": "string",
            "number_of_allocations": "int", "threads_per_allocation": "int", "queue_capacity": "int",
            "cache_size": "value", "priority": "string", "adaptive_allocations": "object"})
        params, timeout, timeout_text, deployment_id = self._start_params(request, model_id)
        wait_for = request.params.get("wait_for", "started").lower()
        with self._lock:
            if deployment_id in self._by_id:
                raise errors.bad_request(
                    "Could not start model deployment because an existing deployment with the same id "
                    f"[{deployment_id}] exist"
                )
        model = self.store.require(model_id)
        if model.config.get("model_type") != "pytorch":
            raise errors.bad_request(f"model [{model_id}] of type [{model.config.get('model_type')}] cannot be "
                                     "deployed. Only PyTorch models can be deployed")
        if deployment_id != model_id and self.store.get(deployment_id) is not None:
            raise errors.bad_request(
                f"Deployment id [{deployment_id}] is the same as an another model which is not the model being "
                "deployed. Deployment id can be the same as the model being deployed but cannot match a different model"
            )
        total_length = self.store.check_definition(model)
        if "adaptive_allocations" in body:
            params["adaptive_allocations"] = body["adaptive_allocations"]
        deployment = Deployment(deployment_id, model_id, {**params, "model_bytes": total_length},
                                int(time.time() * 1000))
        with self._lock:
            # Checked again under the lock: two concurrent starts of one id must not both win.
            if deployment_id in self._by_id:
                raise errors.bad_request(
                    "Could not start model deployment because an existing deployment with the same id "
                    f"[{deployment_id}] exist"
                )
            self._by_id[deployment_id] = deployment
        threading.Thread(target=self._load, args=(deployment, model), daemon=True).start()
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
        deployment.loaded = native.start(self.store.definition(model), self.cluster.release)
        task_settings = next(iter(model.config["inference_config"].values()))
        kind, options = next(iter(task_settings["tokenization"].items()))
        deployment.tokenizer = TextTokenizer(kind, options, model.vocabulary())

    def _assignment(self, deployment: Deployment) -> dict[str, Any]:
        state = "started" if deployment.state == "started" else deployment.state
        routing: dict[str, Any] = {"current_allocations": 1 if state == "started" else 0,
                                   "target_allocations": deployment.params["number_of_allocations"],
                                   "routing_state": state, "reason": deployment.reason or ""}
        task_parameters = {"model_id": deployment.model_id, "deployment_id": deployment.deployment_id,
                           **deployment.params, "per_deployment_memory_bytes": 0, "per_allocation_memory_bytes": 0}
        task_parameters.setdefault("cache_size", f"{deployment.params['model_bytes']}b")
        return {"task_parameters": task_parameters, "routing_table": {self.cluster.node_id: routing},
                "assignment_state": state, "start_time": _iso(deployment.start_time),
                "max_assigned_allocations": 1}

    # --- _stop and _stats ---------------------------------------------------------------------

    def stop(self, request: Request) -> Response:
        target = request.path_params["model_id"]
        self._body_params(request, "stop_trained_model_deployment",
                          {"allow_no_match": "bool", "force": "bool", "id": "string"})
        with self._lock:
            matched = [d for d in self._by_id.values() if target in (d.deployment_id, d.model_id)]
        if not matched:
            if self.store.get(target) is None:
                raise errors.model_not_found(target)
            if not request.flag("allow_no_match", True):
                raise errors.not_found(f"No known model deployment with id [{target}]")
        for deployment in matched:
            self._remove(deployment)
        return Response(200, {"stopped": True})

    def stats(self, request: Request) -> Response:
        models = self.store.resolve(request.path_params.get("model_id", "_all"), request.flag("allow_no_match", True))
        entries = []
        for model in models:
            base = {"model_id": model.model_id,
                    "model_size_stats": {"model_size_bytes": model.config.get("model_size_bytes", 0),
                                         "required_native_memory_bytes": 2 * model.config.get("model_size_bytes", 0)},
                    "pipeline_count": 0}
            deployments = self.for_model(model.model_id)
            if not deployments:
                entries.append({**base, "inference_stats": {"failure_count": 0, "inference_count": 0,
                                                            "cache_miss_count": 0, "missing_all_fields_count": 0,
                                                            "timestamp": int(time.time() * 1000)}})
            entries += [{**base, "deployment_stats": self._deployment_stats(d)} for d in deployments]
        return Response(200, {"count": len(entries), "trained_model_stats": entries})

    def _deployment_stats(self, deployment: Deployment) -> dict[str, Any]:
        state = deployment.state
        allocation_state = {"started": "fully_allocated", "starting": "starting"}.get(state, "starting")
        node = {"node": {self.cluster.node_id: self.cluster.node()},
                "routing_state": {"routing_state": state, **({"reason": deployment.reason} if deployment.reason
                                                             else {})},
                "inference_count": deployment.inference_count, "number_of_allocations": 1 if state == "started" else 0,
                "threads_per_allocation": deployment.params["threads_per_allocation"],
                "start_time": deployment.start_time}
        stats = {"deployment_id": deployment.deployment_id, "model_id": deployment.model_id,
                 **{k: v for k, v in deployment.params.items() if k != "model_bytes"},
                 "state": state, "allocation_status": {"allocation_count": 1 if state == "started" else 0,
                                                       "target_allocation_count":
                                                           deployment.params["number_of_allocations"],
                                                       "state": allocation_state},
                 "start_time": deployment.start_time, "peak_throughput_per_minute": 0, "nodes": [node]}
        if deployment.reason:
            stats["reason"] = deployment.reason
        return stats

    # --- _infer -------------------------------------------------------------------------------

    def infer(self, request: Request) -> Response:
        target = request.path_params["model_id"]
        with self._lock:
            deployment = self._by_id.get(target) or next(
                (d for d in self._by_id.values() if d.model_id == target), None)
        model = self.store.get(deployment.model_id if deployment else target)
        if model is None:
            raise errors.model_not_found(target)
        if deployment is None:
            raise errors.conflict(f"Model [{target}] must be deployed to use. Please deploy with the start trained "
                                  "model deployment API.")
        if deployment.state != "started":
            raise errors.conflict(
                f"Trained model deployment [{deployment.deployment_id}] is not allocated to any nodes")
        body, locations = config.parse_json(request.body)
        config.check_fields("infer_trained_model_request", body, {"docs": "array", "inference_config": "object"},
                            locations)
        docs = body.get("docs") or []
        if not docs:
            raise errors.validation(["at least one document is required"])
        if deployment.loaded is None:  # restored after a restart: the native process loads it again
            try:
                self._attach(deployment, model)
            except native.NativeFailure as exc:
                raise EsError(500, "status_exception", f"Error in inference process: [{exc}]") from exc
        if deployment.loaded is None or deployment.loaded.module is None:
            # Stand-in limitation, not an Elasticsearch text: without torch nothing can run the module.
            raise errors.bad_request("the stand-in cannot run inference: torch is not installed")
        task, settings = next(iter(model.config["inference_config"].items()))
        overrides = next(iter((body.get("inference_config") or {}).values()), {})
        settings = {**settings, **{k: v for k, v in overrides.items() if k in ("num_top_classes", "results_field")}}
        field_name = model.config["input"]["field_names"][0]
        results = []
        for doc in docs:
            if field_name not in doc:
                raise errors.bad_request(f"Input field [{field_name}] does not exist in the source document")
            assert deployment.tokenizer is not None
            results.append(inference.run(deployment.loaded.module, deployment.tokenizer, task, settings,
                                         str(doc[field_name])))
            deployment.inference_count += 1
        return Response(200, {"inference_results": results})


def _iso(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis / 1000)) + f".{millis % 1000:03d}Z"
