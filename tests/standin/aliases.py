"""Model aliases: `PUT|DELETE _ml/trained_models/<model_id>/model_aliases/<model_alias>`.

Owns the alias table (Elasticsearch keeps it in the cluster state's ModelAliasMetadata; the stand-in
persists it as `model_aliases.json` in the data directory) and the two endpoints, with the checks of
PutTrainedModelAliasAction.Request.validate, TransportPutTrainedModelAliasAction and
TransportDeleteTrainedModelAliasAction in their order. GET, `_stats`, `_start` and `_infer` resolve an
alias to its model through `ModelAliases.resolve`; GET shows a model's aliases, sorted, as
`metadata.model_aliases`. Deleting a model deletes its aliases.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import errors
from .cluster import ClusterInfo
from .errors import EsError
from .models import Model, Store, write_json
from .rest import Request, Response, Route, route

if TYPE_CHECKING:
    from .deployments import Deployments

# PutTrainedModelAliasAction: like a model id, but an alias cannot end in a digit.
_ALIAS_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z])?")


class ModelAliases:
    """The alias -> model id table, persisted atomically; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self._file = data_dir / "model_aliases.json"
        self._lock = threading.Lock()
        self._table: dict[str, str] = (
            json.loads(self._file.read_text(encoding="utf-8")) if self._file.is_file() else {})

    def table(self) -> dict[str, str]:
        with self._lock:
            return dict(self._table)

    def resolve(self, model_id: str) -> str:
        """The model an alias refers to; any other id as given."""
        with self._lock:
            return self._table.get(model_id, model_id)

    def of_model(self, model_id: str) -> list[str]:
        with self._lock:
            return sorted(a for a, m in self._table.items() if m == model_id)

    def put(self, alias: str, model_id: str) -> None:
        with self._lock:
            self._table[alias] = model_id
            write_json(self._file, self._table)

    def remove(self, aliases: list[str]) -> None:
        with self._lock:
            for alias in aliases:
                self._table.pop(alias, None)
            write_json(self._file, self._table)


def with_aliases(model: Model, aliases: list[str]) -> dict[str, Any]:
    """The config GET answers: TrainedModelConfig.Builder.setModelAliases puts them in `metadata`.

    The built-in model is loaded from its resource without its aliases, as TrainedModelProvider does.
    """
    body = dict(model.config)
    if aliases and not model.builtin:
        body["metadata"] = {**(body.get("metadata") or {}), "model_aliases": aliases}
    return body


class AliasApi:
    def __init__(self, store: Store, aliases: ModelAliases, cluster: ClusterInfo, deployments: Deployments) -> None:
        self.store = store
        self.aliases = aliases
        self.cluster = cluster
        self.deployments = deployments

    def routes(self) -> list[Route]:
        path = "/_ml/trained_models/{model_id}/model_aliases/{model_alias}"
        return [route("PUT", path, self.put, ("reassign", "master_timeout", "timeout")),
                route("DELETE", path, self.delete, ("master_timeout", "timeout"))]

    def put(self, request: Request) -> Response:
        alias, model_id = request.path_params["model_alias"], request.path_params["model_id"]
        problems = []
        if alias == model_id:
            problems.append(f"model_alias [{alias}] cannot equal model_id [{model_id}]")
        if not _ALIAS_PATTERN.fullmatch(alias):
            problems.append(f"Invalid model_alias; '{alias}' can contain lowercase alphanumeric (a-z and 0-9), "
                            "hyphens or underscores; must start with alphanumeric and cannot end with numbers")
        if problems:
            raise errors.validation(problems)
        old_id = self.aliases.table().get(alias)
        if old_id is not None and not request.flag("reassign"):
            raise errors.bad_request(
                f"cannot assign model_alias [{alias}] to model_id [{model_id}] as model_alias already refers to "
                f"[{old_id}]. Set parameter [reassign] to [true] if model_alias should be reassigned.")
        if self.store.get(alias) is not None:
            raise errors.bad_request("model_alias cannot be the same as an existing trained model_id")
        new_model = self.store.get(model_id)
        if new_model is None:
            # ExceptionsHelper.missingTrainedModel, not the GET path's text.
            raise errors.not_found(f"No known trained model with model_id [{model_id}]")
        if self.cluster.license_type == "basic" and new_model.config.get("license_level") != "basic":
            raise errors.license_non_compliant()
        old_model = self.store.get(old_id) if old_id is not None else None
        response = Response(200, {"acknowledged": True})
        if old_model is not None:
            self._check_reassign(alias, new_model, old_model)
            warning = _inputs_differ(new_model, old_model)
            if warning:
                response.headers.append(("Warning", f'299 Elasticsearch-{self.cluster.release.number}-'
                                                    f'{"0" * 40} "{warning}"'))
        self.aliases.put(alias, model_id)
        return response

    def _check_reassign(self, alias: str, new: Model, old: Model) -> None:
        """TransportPutTrainedModelAliasAction's checks when the alias already refers to an existing model."""
        new_task = next(iter(new.config.get("inference_config") or {}), None)
        old_task = next(iter(old.config.get("inference_config") or {}), None)
        if new_task and old_task and new_task != old_task:
            raise errors.bad_request(
                f"cannot reassign model_alias [{alias}] to model [{new.model_id}] with inference config type "
                f"[{new_task}] from model [{old.model_id}] with type [{old_task}]")
        new_type = new.config.get("model_type") or "tree_ensemble"
        old_type = old.config.get("model_type") or "tree_ensemble"
        if new_type != old_type:
            raise errors.bad_request(
                f"cannot reassign model_alias [{alias}] to model [{new.model_id}] with type [{new_type}] from "
                f"model [{old.model_id}] with type [{old_type}]")
        if new_type != "pytorch":
            return
        old_deployed = self.deployments.for_model(old.model_id)
        new_deployed = self.deployments.for_model(new.model_id)
        if old_deployed and not new_deployed:
            raise errors.bad_request(
                f"cannot reassign model_alias [{alias}] to model [{new.model_id}] from model [{old.model_id}] "
                "as it is not yet deployed")
        if any(d.state == "started" for d in old_deployed) and any(d.state == "starting" for d in new_deployed):
            # The double space is Elasticsearch's.
            raise errors.bad_request(
                f"cannot reassign model_alias [{alias}] to model [{new.model_id}]  from model [{old.model_id}] "
                "as it is not yet allocated to any nodes")

    def delete(self, request: Request) -> Response:
        alias, model_id = request.path_params["model_alias"], request.path_params["model_id"]
        referenced = self.aliases.table().get(alias)
        if referenced is None:
            raise EsError(404, "status_exception", f"model_alias [{alias}] could not be found")
        if referenced != model_id:
            raise errors.conflict(f"model_alias [{alias}] does not refer to provided model_id [{model_id}]")
        self.aliases.remove([alias])
        return Response(200, {"acknowledged": True})


def _inputs_differ(new: Model, old: Model) -> str | None:
    """Messages.TRAINED_MODEL_INPUTS_DIFFER_SIGNIFICANTLY, sent as a warning header (the alias is moved)."""
    old_fields = set((old.config.get("input") or {}).get("field_names") or [])
    new_fields = set((new.config.get("input") or {}).get("field_names") or [])
    half = len(old_fields) // 2
    if len(old_fields - new_fields) > half or len(new_fields & old_fields) < half:
        return (f"The input fields for new model [{new.model_id}] and for old model [{old.model_id}] differ "
                "significantly, model results may change drastically.")
    return None
