"""Start the deployment and wait for the allocation state asked for."""
from __future__ import annotations

import time
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
