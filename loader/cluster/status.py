"""`esbundle status`: the cluster's models that came from bundles, with their bundle and deployment state.

Privileges (privileges.py): the role `{"cluster": ["monitor"]}` is enough (`monitor_ml` and `cluster:monitor/main` are
too, without the endpoints). Reading the models is essential: a 403 there stops with the privilege and the call
named; the inference endpoints only inform, and a user who may not list them gets a note.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from loader.cluster import privileges
from loader.cluster.client import Cluster
from loader.cluster.endpoints import by_model
from loader.format.cluster_metadata import metadata_of


@dataclass(frozen=True)
class ModelStatus:
    model_id: str
    bundle_id: str | None
    bundle_version: int | None
    signer_key_id: str | None
    fully_defined: bool | None
    deployment: str  # the deployment state, or "not deployed"
    endpoints: tuple[str, ...] = ()  # inference endpoints that serve the model

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_STATUS_HINT = "a role with the cluster privilege [monitor] is enough for esbundle status"


def bundled_models(cluster: Cluster, notes: list[str] | None = None) -> list[ModelStatus]:
    """The rows; `notes` collects what could not be read (the endpoints, without the privilege to list them)."""
    notes = [] if notes is None else notes
    models = privileges.guarded(cluster, "status_models", "list trained models", lambda c: c.ml.get_trained_models(
        model_id="*", size=10000), hint=_STATUS_HINT)
    stats = privileges.guarded(cluster, "status_stats", "read model stats", lambda c: c.ml.get_trained_models_stats(
        model_id="*", size=10000), hint=_STATUS_HINT)
    states = {s["model_id"]: (s.get("deployment_stats") or {}).get("state") for s in stats["trained_model_stats"]}
    served = by_model(cluster, notes)
    rows = []
    for config in models["trained_model_configs"]:
        meta = metadata_of(config)
        if not meta:
            continue
        model_id = config["model_id"]
        # The listing leaves out whether every part is stored; only a request for one model says.
        detail = privileges.guarded(cluster, "status_model", f"read [{model_id}]", lambda c, m=model_id:
                                    c.ml.get_trained_models(model_id=m, include="definition_status"),
                                    ids={"id": model_id}, hint=_STATUS_HINT)["trained_model_configs"][0]
        rows.append(ModelStatus(model_id=model_id, bundle_id=meta.get("bundle_id"),
                                bundle_version=meta.get("bundle_version"), signer_key_id=meta.get("signer_key_id"),
                                fully_defined=detail.get("fully_defined"),
                                deployment=states.get(model_id) or "not deployed",
                                endpoints=tuple(served.get(model_id, ()))))
    return rows
