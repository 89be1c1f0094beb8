"""What Elasticsearch authorizes after it authenticates: users with roles, the action each endpoint runs, the cluster
privileges that grant it, the 403 for a call outside a user's role, and `_has_privileges`.

Written from Elasticsearch's sources, not from the product's table (tests/test_standin_privileges.py compares the
two where they overlap):
- each endpoint's action: the NAME (or TYPE) of the action its Rest*Action executes (`ACTIONS` names the class);
- named privileges: ClusterPrivilegeResolver's patterns (`monitor` is `cluster:monitor/*` and the three template
  reads; `manage` is `all` without `cluster:admin/xpack/security/*`; `monitor_inference` and `manage_inference` from
  8.14, elastic/elasticsearch#106371). A role's privilege that is an action name (`cluster:...`) is the pattern
  `name*` (ClusterPrivilegeResolver.resolve, names lower-cased);
- the denial: AuthorizationDenialMessages.Default.actionDenied: `action [A] is unauthorized for user [U] with
  effective roles [R,...], this action is granted by the cluster privileges [P,...]`, 403 `security_exception`;
  roles sorted; the privileges are findPrivilegesThatGrant, ordered by sortByAccessLevel (how many other named
  privileges each implies, then by name);
- `_has_privileges` (RestHasPrivilegesAction, RBACEngine.checkPrivileges): any user may ask about themselves; each
  cluster privilege asked is granted when the user's privileges, merged, imply it (automaton subset); the answer is
  `{"username","has_all_requested","cluster":{...},"index":{...},"application":{}}`; no privilege asked is
  `Validation Failed: 1: must specify at least one privilege;`; an unknown name is ClusterPrivilegeResolver's
  `unknown cluster privilege [x]. ...`.

Scope: only the named privileges that grant an action the stand-in serves are known (and `none`); their access-level
order is computed among those, which keeps Elasticsearch's order for every action here (the privileges left out
imply none of these and are implied only by `monitor`, `manage` and `all`). Patterns are prefixes (`x*`) or exact
names; a `*` elsewhere is refused at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import errors
from .errors import EsError
from .releases import Version

INFERENCE_PRIVILEGES_SINCE: Version = (8, 14, 0)  # monitor_inference, manage_inference
CLUSTER_SETTINGS_ACTION_SINCE: Version = (8, 3, 0)  # ClusterGetSettingsAction (elastic/elasticsearch#86405)
HAS_PRIVILEGES = "cluster:admin/xpack/security/user/has_privileges"  # HasPrivilegesAction.NAME
SUPERUSER = "superuser"  # ReservedRolesStore: cluster [all]
_ALL = ("cluster:*", "indices:admin/template/*", "indices:admin/index_template/*")
_TEMPLATE_READS = ("indices:admin/template/get", "cluster:admin/component_template/get",
                   "indices:admin/index_template/get")  # GetIndexTemplates / GetComponentTemplate / GetComposable...
_ML = "/_ml/trained_models"


@dataclass(frozen=True)
class Privilege:
    name: str
    allow: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    since: Version = (0, 0, 0)

    def grants(self, action: str) -> bool:
        return any(_matches(p, action) for p in self.allow) and not any(_matches(p, action) for p in self.exclude)


# ClusterPrivilegeResolver (x-pack/plugin/core/.../security/authz/privilege/ClusterPrivilegeResolver.java)
PRIVILEGES: tuple[Privilege, ...] = (
    Privilege("none", ()),
    Privilege("all", _ALL),
    Privilege("monitor", ("cluster:monitor/*", *_TEMPLATE_READS)),
    Privilege("monitor_ml", ("cluster:monitor/xpack/ml/*",)),
    Privilege("monitor_inference", ("cluster:monitor/xpack/inference*",
                                    "cluster:monitor/xpack/ml/trained_models/deployment/infer"),
              since=INFERENCE_PRIVILEGES_SINCE),
    Privilege("manage", _ALL, ("cluster:admin/xpack/security/*",)),
    Privilege("manage_ml", ("cluster:admin/xpack/ml/*", "cluster:monitor/xpack/ml/*")),
    Privilege("manage_inference", ("cluster:admin/xpack/inference/*", "cluster:monitor/xpack/inference*",
                                   "cluster:admin/xpack/ml/trained_models/deployment/start",
                                   "cluster:admin/xpack/ml/trained_models/deployment/stop",
                                   "cluster:monitor/xpack/ml/trained_models/deployment/infer"),
              since=INFERENCE_PRIVILEGES_SINCE),
    Privilege("transport_client", ("cluster:monitor/nodes/liveness", "cluster:monitor/state")),
    Privilege("read_ccr", ("cluster:monitor/state", HAS_PRIVILEGES)),
    Privilege("manage_ccr", ("cluster:admin/xpack/ccr/*", "cluster:monitor/state", HAS_PRIVILEGES)),
)

# (method, path, action, the action's class): what each endpoint the stand-in serves executes.
ACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/", "cluster:monitor/main", "MainRestPlugin.MAIN_ACTION (MainAction in 8.x)"),
    ("HEAD", "/", "cluster:monitor/main", "MainRestPlugin.MAIN_ACTION (MainAction in 8.x)"),
    ("GET", "/_license", "cluster:monitor/xpack/license/get", "GetLicenseAction"),
    ("GET", "/_nodes", "cluster:monitor/nodes/info", "TransportNodesInfoAction.TYPE"),
    ("GET", "/_ml/info", "cluster:monitor/xpack/ml/info/get", "MlInfoAction"),
    ("GET", "/_cluster/settings", "cluster:monitor/settings", "ClusterGetSettingsAction (8.3+)"),
    ("GET", _ML, "cluster:monitor/xpack/ml/inference/get", "GetTrainedModelsAction"),
    ("GET", _ML + "/{id}", "cluster:monitor/xpack/ml/inference/get", "GetTrainedModelsAction"),
    ("PUT", _ML + "/{id}", "cluster:admin/xpack/ml/inference/put", "PutTrainedModelAction"),
    ("DELETE", _ML + "/{id}", "cluster:admin/xpack/ml/inference/delete", "DeleteTrainedModelAction"),
    ("PUT", _ML + "/{id}/vocabulary", "cluster:admin/xpack/ml/trained_models/vocabulary/put",
     "PutTrainedModelVocabularyAction"),
    ("PUT", _ML + "/{id}/definition/{part}", "cluster:admin/xpack/ml/trained_models/part/put",
     "PutTrainedModelDefinitionPartAction"),
    ("PUT", _ML + "/{id}/model_aliases/{alias}", "cluster:admin/xpack/ml/inference/model_aliases/put",
     "PutTrainedModelAliasAction"),
    ("DELETE", _ML + "/{id}/model_aliases/{alias}", "cluster:admin/xpack/ml/inference/model_aliases/delete",
     "DeleteTrainedModelAliasAction"),
    ("POST", _ML + "/{id}/deployment/_start", "cluster:admin/xpack/ml/trained_models/deployment/start",
     "StartTrainedModelDeploymentAction"),
    ("POST", _ML + "/{id}/deployment/_stop", "cluster:admin/xpack/ml/trained_models/deployment/stop",
     "StopTrainedModelDeploymentAction"),
    ("POST", _ML + "/{id}/deployment/_update", "cluster:admin/xpack/ml/trained_models/deployment/update",
     "UpdateTrainedModelDeploymentAction"),
    ("POST", _ML + "/{id}/deployment/cache/_clear", "cluster:admin/xpack/ml/trained_models/deployment/clear_cache",
     "ClearDeploymentCacheAction"),
    ("GET", _ML + "/_stats", "cluster:monitor/xpack/ml/inference/stats/get", "GetTrainedModelsStatsAction"),
    ("GET", _ML + "/{id}/_stats", "cluster:monitor/xpack/ml/inference/stats/get", "GetTrainedModelsStatsAction"),
    ("POST", _ML + "/{id}/_infer", "cluster:monitor/xpack/ml/inference/infer", "InferModelAction.EXTERNAL_NAME"),
    ("POST", _ML + "/{id}/deployment/_infer", "cluster:monitor/xpack/ml/inference/infer",
     "InferModelAction.EXTERNAL_NAME (RestInferTrainedModelDeploymentAction delegates to it)"),
    ("PUT", "/_inference/{task_type}/{id}", "cluster:admin/xpack/inference/put", "PutInferenceModelAction"),
    ("GET", "/_inference", "cluster:monitor/xpack/inference/get", "GetInferenceModelAction"),
    ("GET", "/_inference/{id}", "cluster:monitor/xpack/inference/get", "GetInferenceModelAction"),
    ("GET", "/_inference/{task_type}/{id}", "cluster:monitor/xpack/inference/get", "GetInferenceModelAction"),
    ("POST", "/_inference/{id}", "cluster:monitor/xpack/inference", "InferenceAction (InferenceActionProxy)"),
    ("POST", "/_inference/{task_type}/{id}", "cluster:monitor/xpack/inference", "InferenceAction"),
    ("DELETE", "/_inference/{id}", "cluster:admin/xpack/inference/delete", "DeleteInferenceEndpointAction"),
    ("DELETE", "/_inference/{task_type}/{id}", "cluster:admin/xpack/inference/delete",
     "DeleteInferenceEndpointAction"),
)
_ROUTES = sorted(((method, re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$"), action, path)
                  for method, path, action, _ in ACTIONS), key=lambda r: r[3].count("{"))


def _matches(pattern: str, action: str) -> bool:
    return action.startswith(pattern[:-1]) if pattern.endswith("*") else action == pattern


def is_cluster_action(name: str) -> bool:
    """ClusterPrivilegeResolver.isClusterAction: matched by `all`'s patterns."""
    return any(_matches(p, name) for p in _ALL)


def action_for(method: str, path: str, version: Version) -> str | None:
    """The action an endpoint runs on this release; None for the stand-in's own endpoints."""
    for route_method, pattern, action, _ in _ROUTES:
        if route_method == method and pattern.match(path):
            if action == "cluster:monitor/settings" and version < CLUSTER_SETTINGS_ACTION_SINCE:
                return "cluster:monitor/state"  # ClusterStateAction.NAME, which RestClusterGetSettingsAction used
            return action
    return None


def known(version: Version) -> dict[str, Privilege]:
    return {p.name: p for p in PRIVILEGES if version >= p.since}


def resolve(name: str, version: Version) -> Privilege:
    """ClusterPrivilegeResolver.resolve: an action name is the pattern `name*`; else a named privilege."""
    name = name.lower()
    if is_cluster_action(name):
        if "*" in name.rstrip("*") or "?" in name:
            raise errors.not_emulated(f"a wildcard other than a trailing one in the cluster privilege [{name}]")
        return Privilege(name, (name.rstrip("*") + "*",))
    named = known(version)
    if name in named:
        return named[name]
    raise EsError(400, "illegal_argument_exception",
                  f"unknown cluster privilege [{name}]. a privilege must be either one of the predefined cluster "
                  f"privilege names [{','.join(ordered(named.values()))}] or a pattern over one of the available "
                  "cluster actions")


def _witnesses(privileges: list[Privilege]) -> set[str]:
    """Strings on which two unions of prefix and exact patterns differ if they differ at all: each pattern's base,
    and the base followed by a character no pattern has (membership depends only on which bases prefix a string)."""
    bases = {p.rstrip("*") for privilege in privileges for p in (*privilege.allow, *privilege.exclude)}
    fresh = "\x00"
    return {"", fresh} | bases | {b + fresh for b in bases}


def implies(holder: list[Privilege], wanted: list[Privilege]) -> bool:
    """ClusterPermission.implies: everything `wanted` grants, the merged `holder` grants."""
    return all(any(h.grants(s) for h in holder) for s in _witnesses(holder + wanted)
               if any(w.grants(s) for w in wanted))


def ordered(privileges: Iterable[Privilege]) -> list[str]:
    """sortByAccessLevel: by how many other privileges each implies, then by name."""
    among = list(privileges)
    count = {p.name: sum(1 for q in among if q is not p and implies([p], [q])) for p in among}
    return sorted(count, key=lambda name: (count[name], name))


def granted_by(action: str, version: Version) -> list[str]:
    """ClusterPrivilegeResolver.findPrivilegesThatGrant, in the denial's order."""
    named = known(version)
    return [name for name in ordered(named.values()) if named[name].grants(action)]


@dataclass(frozen=True)
class User:
    """A user of `--user NAME:PASSWORD[:PRIVILEGE,...]`: without privileges a superuser, as `elastic` is; with them,
    the one role `<NAME>_role` holding those cluster privileges."""

    name: str
    password: str = field(repr=False)
    privileges: tuple[str, ...] = ()
    api_key_id: str | None = None

    @property
    def roles(self) -> tuple[str, ...]:
        return (f"{self.name}_role",) if self.privileges else (SUPERUSER,)

    def holds(self, version: Version) -> list[Privilege]:
        return [resolve(p, version) for p in self.privileges] if self.privileges else [known(version)["all"]]

    def described(self) -> str:
        """AuthorizationDenialMessages: who, and (for a user, not an API key) with which roles."""
        if self.api_key_id:
            return f"API key id [{self.api_key_id}] of user [{self.name}]"
        return f"user [{self.name}] with effective roles [{','.join(sorted(self.roles))}]"


def split_user(text: str) -> tuple[str, str, tuple[str, ...]]:
    """`NAME:PASSWORD` or `NAME:PASSWORD:PRIVILEGE,...` as (name, password, privileges). A password may hold `:`: the
    privileges are the part after the first `:` whose rest is a list of privilege names or cluster action patterns
    (`cluster:monitor/main`)."""
    name, colon, rest = text.partition(":")
    if not name or not colon:
        raise ValueError(f"--user takes NAME:PASSWORD[:PRIVILEGE,...], not {text!r}")
    names = {p.name for p in PRIVILEGES}
    for at in (i for i, c in enumerate(rest) if c == ":"):
        items = rest[at + 1:].split(",")
        if all(item.lower() in names or is_cluster_action(item.lower()) for item in items):
            return name, rest[:at], tuple(items)
    return name, rest, ()


def parse_user(text: str, version: Version) -> User:
    name, password, privileges = split_user(text)
    for privilege in privileges:
        resolve(privilege, version)  # one this release does not know (or a wildcard not matched) fails the start
    return User(name, password, privileges)


def authorize(user: User | None, method: str, path: str, version: Version) -> None:
    """RBACEngine.authorizeClusterAction, for the endpoint's action: a 403 outside the user's role."""
    action = action_for(method, path, version)
    if user is None or action is None or any(p.grants(action) for p in user.holds(version)):
        return
    message = f"action [{action}] is unauthorized for {user.described()}"
    grantors = granted_by(action, version)
    if grantors:
        message += f", this action is granted by the cluster privileges [{','.join(grantors)}]"
    raise EsError(403, "security_exception", message)


def has_privileges(user: User, body: object, version: Version) -> dict[str, object]:
    """POST|GET `_security/user/_has_privileges` for the authenticated user (cluster privileges; indices and
    applications only as far as an answer of none held, or all held for a superuser)."""
    if not isinstance(body, dict):
        raise EsError(400, "parse_exception", "request body or source parameter is required")
    unknown = sorted(set(body) - {"cluster", "index", "application"})
    if unknown:
        raise errors.not_emulated(f"the _has_privileges fields {unknown}")
    asked_cluster = [str(p) for p in body.get("cluster") or []]
    asked_index = list(body.get("index") or [])
    if body.get("application"):
        raise errors.not_emulated("application privileges in _has_privileges")
    if not asked_cluster and not asked_index:
        raise EsError(400, "action_request_validation_exception",
                      "Validation Failed: 1: must specify at least one privilege;")
    holds = user.holds(version)
    cluster = {name: implies(holds, [resolve(name, version)]) for name in asked_cluster}
    superuser = not user.privileges
    index: dict[str, dict[str, bool]] = {}
    for entry in asked_index:
        for index_name in entry.get("names") or []:
            index.setdefault(index_name, {}).update({p: superuser for p in entry.get("privileges") or []})
    complete = all(cluster.values()) and all(v for rights in index.values() for v in rights.values())
    return {"username": user.name, "has_all_requested": complete, "cluster": cluster, "index": index,
            "application": {}}
