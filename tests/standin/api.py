"""The trained-model endpoints that store things: config, vocabulary, definition parts, deletion.

Owns `PUT/GET/DELETE /_ml/trained_models/<id>`, `PUT .../vocabulary`, `PUT .../definition/<part>`,
and the stand-in's own `/_standin/...` endpoints, in Elasticsearch's order of checks. Deployments
and inference live in deployments.py; parsing rules in config.py; persistence in models.py; aliases in
aliases.py; the built-in `lang_ident_model_1` in builtin.py; packaged ids (starting with `.`), once parsed and
checked here, in packages.py. What the stand-in does not emulate (tree models) is answered with
`errors.not_emulated`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from . import config, errors
from .aliases import ModelAliases, with_aliases
from .cluster import ClusterInfo
from .deployments import Deployments
from .errors import EsError
from .faults import FaultPlan
from .models import Model, Store, expand_ids_missing
from .packages import PackagedModels
from .rest import Request, Response, Route, route

_PART_FIELDS = {"definition": "string", "total_definition_length": "long", "total_parts": "int"}
# TrainedModelConfig.toXContent leaves these out when `exclude_generated` is set (an export for another cluster).
_GENERATED_FIELDS = ("created_by", "version", "create_time", "model_size_bytes", "estimated_operations",
                     "license_level")
_VOCABULARY_FIELDS = {"vocabulary": "string_array", "merges": "string_array", "scores": "double_array"}


def ok(body: Any) -> Response:
    return Response(200, body)


class TrainedModels:
    def __init__(self, store: Store, cluster: ClusterInfo, deployments: Deployments, faults: FaultPlan,
                 aliases: ModelAliases, packages: PackagedModels) -> None:
        self.packages = packages
        self.store = store
        self.cluster = cluster
        self.deployments = deployments
        self.faults = faults
        self.aliases = aliases

    def routes(self) -> list[Route]:
        base = "/_ml/trained_models"
        get_params = ("allow_no_match", "decompress_definition", "exclude_generated", "from", "include",
                      "include_model_definition", "size", "tags")
        return [
            route("GET", base, self.get, get_params),
            route("GET", base + "/{model_id}", self.get, get_params),
            route("PUT", base + "/{model_id}", self.put,
                  ("defer_definition_decompression", "wait_for_completion", "timeout"), licensed=True),
            route("DELETE", base + "/{model_id}", self.delete, ("force", "timeout")),
            route("PUT", base + "/{model_id}/vocabulary", self.put_vocabulary, licensed=True),
            route("PUT", base + "/{model_id}/definition/{part}", self.put_part, name="part", licensed=True),
            route("GET", "/_standin/trained_models/{model_id}/definition", self.standin_definition),
            route("GET", "/_standin/trained_models/{model_id}/stats", self.standin_stats),
        ]

    # --- config -------------------------------------------------------------------------------

    def put(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        _refuse_not_emulated(model_id, request.body)
        packaged = model_id.startswith(".")
        if packaged:
            read, field_names = config.parse_packaged_config(model_id, request.body, self.cluster.release.number)
        else:
            stored = config.parse_model_config(model_id, request.body, self.cluster.release.number)
        # TransportPutTrainedModelAction, after validation and before storing.
        if model_id in self.aliases.table():
            raise errors.bad_request(f"requested model_id [{model_id}] is the same as an existing model_alias. "
                                     "Model model_aliases and ids must be unique")
        if self.deployments.get(model_id) is not None:
            raise errors.bad_request(f"Cannot create model [{model_id}] the id is the same as an current model "
                                     "deployment")
        if packaged:
            return self.packages.put(request, model_id, read, field_names)
        self.store.create(model_id, stored)
        return ok(stored)

    def get(self, request: Request) -> Response:
        """TransportGetTrainedModelsAction: expandIds (ids, aliases, wildcards, `tags`, paging), then the checks
        on the page of ids, then the configs as toXContent shows them (`exclude_generated` drops what the cluster
        generated)."""
        expression = request.path_params.get("model_id", "_all")
        includes = {i.strip() for i in request.params.get("include", "").split(",") if i.strip()}
        tags = [t.strip() for t in request.params.get("tags", "").split(",") if t.strip()]
        models = self.store.resolve(expression, request.flag("allow_no_match", True), self.aliases.table(),
                                    tags=tags, missing=expand_ids_missing)
        start = request.integer("from", 0) or 0
        size = request.integer("size", 100)
        page = models[start:start + (size if size is not None else 100)]
        if "definition_status" in includes and len(page) > 1:
            raise errors.bad_request(
                "Getting the model download status is not supported when getting more than one model"
            )
        wants_definition = "definition" in includes or request.flag("include_model_definition")
        if wants_definition and any(m.builtin for m in page):
            raise errors.not_emulated("the definition of the built-in model [lang_ident_model_1]")
        configs = []
        for model in page:
            body = with_aliases(model, self.aliases.of_model(model.model_id))
            if "definition_status" in includes:
                if body.get("model_type") != "pytorch":
                    raise errors.bad_request("Definition status is only relevant to PyTorch model types")
                body["fully_defined"] = self.store.fully_defined(model)
            if request.flag("exclude_generated"):
                body = {k: v for k, v in body.items() if k not in _GENERATED_FIELDS}
            configs.append(body)
        return ok({"count": len(models), "trained_model_configs": configs})

    def delete(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        model = self.store.require(model_id)
        if self.deployments.for_model(model_id):
            if not request.flag("force"):
                raise errors.conflict(
                    f"Cannot delete model [{model_id}] as it is currently deployed; use force to delete the model"
                )
            self.deployments.stop_model(model_id)
        if model.builtin:
            # TrainedModelProvider.deleteTrainedModel: models stored as resources stay.
            raise errors.bad_request(f"Unable to delete model [{model_id}] as it is required by machine learning")
        self.store.delete(model_id)
        self.aliases.remove(self.aliases.of_model(model_id))
        return ok({"acknowledged": True})

    # --- vocabulary ---------------------------------------------------------------------------

    def put_vocabulary(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        body, locations = config.parse_json(request.body)
        config.check_fields("put_trained_model_vocabulary", body, _VOCABULARY_FIELDS, locations)
        vocabulary = body.get("vocabulary")
        if vocabulary is None:
            raise errors.illegal_argument("[vocabulary] must not be null.")
        merges, scores = body.get("merges") or [], body.get("scores") or []
        if not vocabulary:
            raise errors.validation(["[vocabulary] must not be empty"])
        if scores and len(scores) != len(vocabulary):
            raise errors.validation(["[scores] must have same length as [vocabulary]"])
        model = self.store.require(model_id)
        document = config.vocabulary_document(model_id, model.config, vocabulary, merges, scores)
        self.store.put_vocabulary(model, document)
        return ok({"acknowledged": True})

    # --- definition parts ---------------------------------------------------------------------

    def put_part(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            part = int(request.path_params["part"])
        except ValueError:
            raise errors.illegal_argument(
                f"Failed to parse int parameter [part] with value [{request.path_params['part']}]"
            ) from None
        try:
            response = self._put_part(model_id, part, request.body)
        except EsError as exc:
            outcome = "exists" if exc.type == "resource_already_exists_exception" else f"refused-{exc.status}"
            self.store.record_attempt(model_id, part, outcome)
            raise
        self.store.record_attempt(model_id, part, "stored")
        response.after = self.faults.part_stored()
        return response

    def _put_part(self, model_id: str, part: int, raw: bytes) -> Response:
        body, locations = config.parse_json(raw)
        config.check_fields("put_trained_model_part_action", body, _PART_FIELDS, locations)
        encoded = body.get("definition")
        if encoded is None:
            raise errors.illegal_argument("[definition] must not be null.")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise errors.parse_error(locations.value(("definition",)),
                                     "[put_trained_model_part_action] failed to parse field [definition]") from None
        total_length = int(body.get("total_definition_length", 0))
        total_parts = int(body.get("total_parts", 0))
        problems = []
        if part < 0:
            problems.append("[part] must be greater or equal to 0")
        if total_parts <= 0:
            problems.append("[total_parts] must be greater than 0")
        if total_parts > 10_000:
            problems.append("[total_parts] must be less than or equal to 10000")
        if total_length <= 0:
            problems.append("[total_definition_length] must be greater than 0")
        if part >= total_parts:
            problems.append("[part] must be less than total_parts")
        if problems:
            raise errors.validation(problems)
        model = self.store.require(model_id)
        if model.config.get("location") is None:
            raise errors.bad_request(f"cannot put definition for model [{model_id}] as location is null")
        if not data:
            raise errors.illegal_argument("[definition_length] must be greater than 0")
        self.store.put_part(model, part, data, total_length, total_parts)
        self._update_model_size(model, total_length)
        return ok({"acknowledged": True})

    def _update_model_size(self, model: Model, total_length: int) -> None:
        # Elasticsearch records the definition length as the model size when none was given.
        if model.config.get("model_type") == "pytorch" and not model.config.get("model_size_bytes"):
            self.store.update_config(model, {**model.config, "model_size_bytes": total_length})

    # --- the stand-in's own endpoints (not Elasticsearch APIs) ---------------------------------

    def _uploaded(self, model_id: str) -> Model:
        model = self.store.require(model_id)
        if model.builtin:
            raise errors.model_not_found(model_id)  # nothing of it was uploaded
        return model

    def standin_definition(self, request: Request) -> Response:
        model = self._uploaded(request.path_params["model_id"])
        return Response(200, raw=self.store.definition(model), content_type="application/octet-stream")

    def standin_stats(self, request: Request) -> Response:
        model = self._uploaded(request.path_params["model_id"])
        return ok(self.store.attempt_stats(model))


def _refuse_not_emulated(model_id: str, raw: bytes) -> None:
    """What the stand-in does not emulate, refused before any parsing: tree models (an inline definition,
    a tree or lang_ident `model_type`, a regression or classification `inference_config`; for a packaged id
    only the inline definition)."""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        return  # config.py answers Elasticsearch's parse error
    if not isinstance(body, dict):
        return
    inference_config = body.get("inference_config")
    tasks = set(inference_config) if isinstance(inference_config, dict) else set()
    if model_id.startswith("."):
        # A packaged id refuses model_type and inference_config itself (validateNoPackageOverrides); a tree
        # definition in its body is still not read.
        tree_fields = False
    else:
        tree_fields = body.get("model_type") in ("tree_ensemble", "lang_ident") or bool(
            tasks & {"regression", "classification"})
    if "definition" in body or "compressed_definition" in body or tree_fields:
        raise errors.not_emulated("tree ensemble and other non-PyTorch trained models")
