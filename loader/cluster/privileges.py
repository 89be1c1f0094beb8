"""Which cluster privilege each call of `esbundle load` and `esbundle status` needs, and what a missing one means.

The table (`CALLS`) is data: for each call, the request, Elasticsearch's action name (what its authorization checks),
the smallest named cluster privilege granting that action, and whether the call is essential (a missing privilege
refuses, before anything is written where possible) or only informative (a note says what was not checked, and the
command goes on). `load_calls` says which calls one load makes; `role` turns them into the body of
`PUT _security/role/NAME` (`esbundle load --print-role`); `denied`/`guarded`/`informative` turn a 403 into a
message naming the privilege and the call.

Facts (Elasticsearch):
- Privileges and what they grant: ClusterPrivilegeResolver (x-pack/plugin/core/.../authz/privilege/): `monitor` is
  `cluster:monitor/*`; `monitor_ml` `cluster:monitor/xpack/ml/*`; `manage_ml` `cluster:admin/xpack/ml/*` and
  `cluster:monitor/xpack/ml/*`; `monitor_inference` `cluster:monitor/xpack/inference*` and the action
  `cluster:monitor/xpack/ml/trained_models/deployment/infer`; `manage_inference` `cluster:admin/xpack/inference/*`,
  `cluster:monitor/xpack/inference*` and the actions `.../trained_models/deployment/start`, `.../stop`,
  `.../deployment/infer` (both inference privileges since 8.14: elastic/elasticsearch#106371); `manage` and `all`
  grant every action below (`manage` all but `cluster:admin/xpack/security/*`).
- A denial is AuthorizationDenialMessages.actionDenied: `action [A] is unauthorized for user [U] with effective roles
  [R], this action is granted by the cluster privileges [P,...]` (403 `security_exception`).
- `_has_privileges` (RestHasPrivilegesAction, RBACEngine.checkPrivileges) answers any authenticated user about
  themselves; a cluster action name given to it is checked as the pattern `action*`
  (ClusterPrivilegeResolver.resolve), which a privilege granting the bare action name (`manage_inference` for
  `_start`) does not imply: such privileges are asked by name too (`Call.exact_grants`).
- The server-side work of these calls runs as the ML or inference origin (TransportPutTrainedModelAction imports a
  package with ML_ORIGIN, TransportInternalInferModelAction runs the deployment's inference with it,
  BaseElasticsearchInternalService starts an endpoint's deployment with INFERENCE_ORIGIN): the user needs only the
  action of the call made.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from loader.cluster.denials import ROLE_HINT, UNAUTHORIZED
from loader.errors import ClusterError

if TYPE_CHECKING:
    from loader.cluster.client import Cluster

T = TypeVar("T")
Version = tuple[int, ...]

MONITOR, MONITOR_ML, MANAGE_ML = "monitor", "monitor_ml", "manage_ml"
MONITOR_INFERENCE, MANAGE_INFERENCE = "monitor_inference", "manage_inference"
INFERENCE_PRIVILEGES_SINCE = (8, 14, 0)  # monitor_inference and manage_inference (elastic/elasticsearch#106371)
# Before 8.14 the inference actions were granted by `monitor` (cluster:monitor/*) and by `manage`/`all` only.
_BEFORE_INFERENCE_PRIVILEGES = {MONITOR_INFERENCE: MONITOR, MANAGE_INFERENCE: "manage"}
# Which named privileges another implies (ClusterPrivilegeResolver's patterns), so a role lists none twice.
IMPLIES = {MONITOR: {MONITOR_ML, MONITOR_INFERENCE}, MANAGE_ML: {MONITOR_ML}, MANAGE_INFERENCE: {MONITOR_INFERENCE}}


@dataclass(frozen=True)
class Call:
    request: str  # method and path; `{id}` and `{inference_id}` are filled in
    action: str  # the transport action Elasticsearch authorizes
    privilege: str  # the smallest named cluster privilege granting it ("" when any user may)
    essential: bool  # a missing privilege stops the command; else a note and the command goes on
    purpose: str  # what esbundle learns or does with it
    exact_grants: tuple[str, ...] = ()  # named privileges granting the bare action name (see the module docstring)

    def privilege_on(self, version: Version | None) -> str:
        """The privilege to name on this release (the inference privileges exist from 8.14)."""
        if version is not None and tuple(version[:3]) < INFERENCE_PRIVILEGES_SINCE:
            return _BEFORE_INFERENCE_PRIVILEGES.get(self.privilege, self.privilege)
        return self.privilege

    def shown(self, ids: Mapping[str, str]) -> str:
        return self.request.format_map({"id": "<id>", "inference_id": "<inference_id>", **ids})


_ML_GET = "cluster:monitor/xpack/ml/inference/get"  # GetTrainedModelsAction.NAME
_ML_PUT = "cluster:admin/xpack/ml/inference/put"  # PutTrainedModelAction.NAME
_ML_STATS = "cluster:monitor/xpack/ml/inference/stats/get"  # GetTrainedModelsStatsAction.NAME
_INFERENCE_GET = "cluster:monitor/xpack/inference/get"  # GetInferenceModelAction.NAME

CALLS: dict[str, Call] = {
    # RestMainAction -> MainRestPlugin.MAIN_ACTION (MainAction.NAME in 8.x)
    "info": Call("GET /", "cluster:monitor/main", MONITOR, True,
                 "the release (compatibility header, libtorch) and the cluster uuid"),
    # RestGetLicenseAction -> GetLicenseAction.NAME
    "licence": Call("GET _license", "cluster:monitor/xpack/license/get", MONITOR, False,
                    "the licence (Elasticsearch refuses the machine learning calls itself without one that has it)"),
    # RestNodesInfoAction -> TransportNodesInfoAction.TYPE
    "nodes": Call("GET _nodes", "cluster:monitor/nodes/info", MONITOR, False,
                  "whether an ML node exists, and the ML nodes' platform"),
    # RestClusterGetSettingsAction -> ClusterGetSettingsAction.NAME (8.3+; before, ClusterStateAction
    # `cluster:monitor/state`: also under `monitor`, and under transport_client/read_ccr, which hold nothing else a
    # load reads)
    "settings": Call("GET _cluster/settings", "cluster:monitor/settings", MONITOR, False,
                     "where the cluster imports Elastic's packages from (xpack.ml.model_repository)"),
    # RestHasPrivilegesAction -> HasPrivilegesAction.NAME; RBACEngine lets every user ask about themselves
    "has_privileges": Call("POST _security/user/_has_privileges", "cluster:admin/xpack/security/user/has_privileges",
                           "", False, "the privileges this user holds, checked before anything is written"),
    # RestGetTrainedModelsAction -> GetTrainedModelsAction.NAME
    "get_model": Call("GET _ml/trained_models/{id}", _ML_GET, MONITOR_ML, True, "what the model id holds"),
    # RestPutTrainedModelAction -> PutTrainedModelAction.NAME
    "put_model": Call("PUT _ml/trained_models/{id}", _ML_PUT, MANAGE_ML, True, "create the model's config"),
    "import_package": Call("PUT _ml/trained_models/{id}?wait_for_completion=true", _ML_PUT, MANAGE_ML, True,
                           "have the cluster import the package from its model repository"),
    # RestPutTrainedModelVocabularyAction -> PutTrainedModelVocabularyAction.NAME
    "put_vocabulary": Call("PUT _ml/trained_models/{id}/vocabulary",
                           "cluster:admin/xpack/ml/trained_models/vocabulary/put", MANAGE_ML, True,
                           "upload the vocabulary"),
    # RestPutTrainedModelDefinitionPartAction -> PutTrainedModelDefinitionPartAction.NAME
    "put_part": Call("PUT _ml/trained_models/{id}/definition/<part>", "cluster:admin/xpack/ml/trained_models/part/put",
                     MANAGE_ML, True, "upload the definition parts"),
    # RestDeleteTrainedModelAction -> DeleteTrainedModelAction.NAME
    "delete_model": Call("DELETE _ml/trained_models/{id}?force=true", "cluster:admin/xpack/ml/inference/delete",
                         MANAGE_ML, True, "delete the model --replace replaces"),
    # RestGetTrainedModelsStatsAction -> GetTrainedModelsStatsAction.NAME
    "model_stats": Call("GET _ml/trained_models/{id}/_stats", _ML_STATS, MONITOR_ML, True,
                        "the deployment's state"),
    # RestStartTrainedModelDeploymentAction -> StartTrainedModelDeploymentAction.NAME (also granted, by its bare name,
    # by manage_inference)
    "start": Call("POST _ml/trained_models/{id}/deployment/_start",
                  "cluster:admin/xpack/ml/trained_models/deployment/start", MANAGE_ML, True, "start the deployment",
                  exact_grants=(MANAGE_INFERENCE,)),
    # RestInferTrainedModelAction -> InferModelAction.EXTERNAL_NAME (the deployment's own inference runs as ML_ORIGIN)
    "infer": Call("POST _ml/trained_models/{id}/_infer", "cluster:monitor/xpack/ml/inference/infer", MONITOR_ML, True,
                  "the smoke test: the recorded samples through _infer"),
    # RestGetInferenceModelAction -> GetInferenceModelAction.NAME
    "get_endpoint": Call("GET _inference/{inference_id}", _INFERENCE_GET, MONITOR_INFERENCE, True,
                         "what the inference id holds"),
    "list_endpoints": Call("GET _inference", _INFERENCE_GET, MONITOR_INFERENCE, True,
                           "the inference endpoints that use the model --replace replaces"),
    # RestPutInferenceModelAction -> PutInferenceModelAction.NAME
    "put_endpoint": Call("PUT _inference/<task_type>/{inference_id}", "cluster:admin/xpack/inference/put",
                         MANAGE_INFERENCE, True, "create the inference endpoint (which starts its deployment)"),
    # RestDeleteInferenceEndpointAction -> DeleteInferenceEndpointAction.NAME
    "delete_endpoint": Call("DELETE _inference/{inference_id}?force=true", "cluster:admin/xpack/inference/delete",
                            MANAGE_INFERENCE, True, "delete an inference endpoint --replace takes over"),
    # RestInferenceAction -> InferenceAction.NAME (InferenceActionProxy in later releases: the same name)
    "endpoint_infer": Call("POST _inference/<task_type>/{inference_id}", "cluster:monitor/xpack/inference",
                           MONITOR_INFERENCE, True, "the smoke test: the recorded samples through the endpoint"),
    # `esbundle status`
    "status_models": Call("GET _ml/trained_models/*", _ML_GET, MONITOR_ML, True, "the cluster's models"),
    "status_stats": Call("GET _ml/trained_models/*/_stats", _ML_STATS, MONITOR_ML, True, "their deployments"),
    "status_model": Call("GET _ml/trained_models/{id}?include=definition_status", _ML_GET, MONITOR_ML, True,
                         "whether each is fully defined"),
    "status_endpoints": Call("GET _inference", _INFERENCE_GET, MONITOR_INFERENCE, False,
                             "the inference endpoints serving each model"),
}
STATUS_CALLS = ("info", "status_models", "status_stats", "status_model", "status_endpoints")


@dataclass(frozen=True)
class LoadNeeds:
    """What a load is asked to do, as far as privileges go (the flags of `esbundle load`)."""

    start: bool = False  # --start (or an endpoint, which starts its own deployment)
    endpoint: bool = False  # --inference-id
    replace: bool = False  # --replace / --clear-previous
    smoke: bool = True  # the smoke test after starting (--no-smoke-test turns it off)
    dry_run: bool = False


def load_calls(needs: LoadNeeds, *, package: bool, action: str = "create", endpoints_to_release: bool = True,
               samples: bool = True) -> list[str]:
    """The calls one load makes, in order. `action` is preflight's plan (create, resume, replace, already-loaded;
    import for a package); `endpoints_to_release`: whether a replaced model has endpoints to delete first."""
    keys = ["info", "licence", "nodes", "get_model", *(["settings"] if package else []),
            *(["get_endpoint"] if needs.endpoint else [])]
    if needs.dry_run:
        return keys
    if action == "replace":
        keys += ["list_endpoints", *(["delete_endpoint"] if endpoints_to_release else []), "delete_model"]
    if action != "already-loaded":
        if package:
            keys.append("import_package")
        else:
            keys += [*(["put_model"] if action in ("create", "replace") else []), "put_vocabulary", "put_part"]
    if needs.endpoint:
        keys += [*(["delete_endpoint"] if needs.replace else []), "put_endpoint"]
    elif needs.start:
        keys += ["model_stats", "start"]
    if (needs.start or needs.endpoint) and needs.smoke and samples:
        keys += ["infer", *(["endpoint_infer"] if needs.endpoint else [])]
    return list(dict.fromkeys(keys))


def role(keys: Iterable[str]) -> list[str]:
    """The named cluster privileges for these calls, none implied by another (sorted, as a role body lists them)."""
    wanted = {CALLS[k].privilege for k in keys} - {""}
    return sorted(p for p in wanted if not any(p in IMPLIES.get(q, ()) for q in wanted if q != p))


def load_role(needs: LoadNeeds) -> tuple[dict[str, Any], list[str]]:
    """The body of `PUT _security/role/NAME` that is enough for this load, and notes for the operator.

    It does not depend on the bundle: a package is imported with the same privilege as a model is uploaded, and its
    extra read (cluster settings) is under `monitor`, which reaching the cluster needs anyway."""
    keys = set(load_calls(needs, package=False, action="replace" if needs.replace else "create"))
    keys |= set(load_calls(needs, package=True, action="replace" if needs.replace else "import"))
    privileges = role(keys)
    notes = []
    if MANAGE_INFERENCE in privileges:
        why = "creates the inference endpoint" if needs.endpoint else \
            "deletes the inference endpoints that use the replaced model (if any)"
        notes.append(f"{MANAGE_INFERENCE}: this load {why}; the privilege exists from Elasticsearch 8.14: on 8.11-8.13 "
                     "grant the actions cluster:admin/xpack/inference/* instead")
    return {"cluster": privileges}, notes


def denied(exc: Exception) -> str | None:
    """Elasticsearch's reason when `exc` is a 403 for a missing privilege (not the licence's 403), else None."""
    meta = getattr(exc, "meta", None)
    body = getattr(exc, "body", None)
    if getattr(meta, "status", None) != 403 or not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    reason = str(body["error"].get("reason", ""))
    return reason if UNAUTHORIZED in reason else None


def lacking(call: Call, version: Version | None, ids: Mapping[str, str]) -> str:
    return f"the cluster privilege [{call.privilege_on(version)}] needed for {call.shown(ids)} ({call.action})"


def refusal(call: Call, reason: str, version: Version | None, ids: Mapping[str, str],
            hint: str = ROLE_HINT) -> ClusterError:
    return ClusterError(f"the user lacks {lacking(call, version, ids)}: Elasticsearch answered 403 security_exception: "
                        f"{reason}", hint=hint)


def guarded(cluster: Cluster, key: str, what: str, request: Callable[[Any], T], *, ids: Mapping[str, str] | None = None,
            ok_statuses: tuple[int, ...] = (), hint: str = ROLE_HINT) -> T:
    """`cluster.call` for an essential call: a privilege denial becomes an error naming the privilege and the call."""
    from elasticsearch import AuthorizationException

    try:
        return cluster.call(what, request, ok_statuses=(*ok_statuses, 403))
    except AuthorizationException as exc:
        reason = denied(exc)
        if reason is None:
            raise cluster._failure(what, exc) from None
        raise refusal(CALLS[key], reason, cluster.version, ids or {}, hint) from None


def informative(cluster: Cluster, key: str, what: str, request: Callable[[Any], T], notes: list[str], *,
                ids: Mapping[str, str] | None = None) -> T | None:
    """`cluster.call` for an informative call: a privilege denial becomes a note (what was not checked, and why) and
    None; the command goes on."""
    from elasticsearch import AuthorizationException

    call = CALLS[key]
    try:
        return cluster.call(what, request, ok_statuses=(403,))
    except AuthorizationException as exc:
        if denied(exc) is None:
            raise cluster._failure(what, exc) from None
        notes.append(f"not checked: {call.purpose}: the user lacks {lacking(call, cluster.version, ids or {})}")
        return None
