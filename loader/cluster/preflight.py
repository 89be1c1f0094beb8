"""Everything checked against the cluster before the first write, and the plan that follows from it.

Order: reachable (done when connecting), licence, an ML node, the Elasticsearch version the bundle needs, the
libtorch the cluster runs, the model id, and what the cluster already holds under that id (absent, this very
bundle half or fully loaded, another bundle, a newer bundle). One of Elastic's packages (package.py) is also checked
for the ML nodes' platform and the cluster's model repository, and what its id holds is judged by the package's
sha256 and size. Any refusal raises before anything is written.

Privileges (privileges.py): a read that only informs (licence, nodes, settings) and meets a 403 becomes a note and
preflight goes on; an essential read refuses, naming the privilege and the call. Once the plan is known,
`require_privileges` asks the cluster (`_has_privileges`) whether the user may make every later call of this load,
and refuses before the first write, naming each missing privilege (a dry run notes what a load would lack).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from loader.bundle.verify import Check, Verified
from loader.cluster import endpoints, privileges
from loader.cluster import package as packages
from loader.cluster.client import RETRY_STATUSES, Cluster
from loader.errors import ClusterError, PolicyError, UsageError
from loader.format.cluster_metadata import metadata_of
from loader.format.manifest import Manifest
from loader.format.model_config import model_id_problem
from loader.releases.deployability import GraphFacts, accepting_ranges, refusal
from loader.releases.libtorch import libtorch_for, max_file_version, parse_version, torch_version, version_text

NOTHING_UPLOADED = "nothing was uploaded"
ML_LICENCES = ("platinum", "enterprise", "trial")


@dataclass(frozen=True)
class Overrides:
    replace: bool = False
    allow_downgrade: bool = False
    force: bool = False


@dataclass(frozen=True)
class LoadPlan:
    """What preflight decided: the action on the model id, and the checks and notes that led to it."""

    model_id: str
    action: str  # create | resume | replace | already-loaded; for a package: import | replace | already-loaded
    part_count: int
    raw_bytes: int
    checks: tuple[Check, ...] = ()
    notes: tuple[str, ...] = ()
    package: bool = False  # one of Elastic's packages: the cluster imports it from its model repository
    repository: str | None = None  # the cluster's xpack.ml.model_repository (packages; None when not readable)

    @property
    def overrides(self) -> list[str]:
        """The safeguards this load goes past, for the receipt."""
        return [n for n in self.notes if n.startswith(("forced", "downgrade"))] + (
            ["replace"] if self.action == "replace" else [])

    @property
    def text(self) -> str:
        if self.action == "already-loaded":
            return f"nothing to do: [{self.model_id}] already holds this bundle"
        if self.package:
            verb = {"import": "have the cluster import", "replace": "delete and have the cluster import again"}
            return (f"would {verb[self.action]} [{self.model_id}] from its model repository "
                    f"({self.repository or 'not readable'}): {self.raw_bytes} bytes; esbundle sends no part")
        verb = {"create": "create", "resume": "resume", "replace": "delete and re-create"}[self.action]
        return (f"would {verb} [{self.model_id}]: config, vocabulary, {self.part_count} definition parts, "
                f"{self.raw_bytes} raw bytes")


def get_model(cluster: Cluster, model_id: str) -> dict[str, Any] | None:
    from elasticsearch import NotFoundError

    try:
        response = privileges.guarded(
            cluster, "get_model", f"look up model [{model_id}]", lambda c: c.ml.get_trained_models(
                model_id=model_id, include="definition_status"), ids={"id": model_id}, ok_statuses=(404,))
    except NotFoundError:
        return None
    models = response.get("trained_model_configs") or []
    return dict(models[0]) if models else None


def _licence(cluster: Cluster, notes: list[str]) -> list[Check]:
    """Informative: without it, Elasticsearch refuses the machine learning calls itself (before anything is stored)."""
    answer = privileges.informative(cluster, "licence", "read the licence", lambda c: c.license.get(), notes)
    if answer is None:
        return []
    licence = answer["license"]
    kind, status = licence.get("type"), licence.get("status")
    if kind not in ML_LICENCES or status != "active":
        raise PolicyError(f"the cluster's licence is {kind} ({status}); machine learning needs platinum, enterprise "
                          "or trial", hint="start a trial or upgrade the licence")
    return [Check("licence", f"{kind}, {status}")]


def _ml_node(nodes: dict[str, Any]) -> Check:
    ml = [n.get("name", node_id) for node_id, n in nodes.items() if "ml" in (n.get("roles") or [])]
    if not ml:
        raise ClusterError("the cluster has no machine learning node (no node with the `ml` role)",
                           hint="add a node with node.roles including ml")
    return Check("ml node", f"{len(ml)} ({', '.join(sorted(ml)[:3])})")


def _runtime(cluster: Cluster, verified: Verified, overrides: Overrides, notes: list[str]) -> list[Check]:
    """Version and libtorch: refuse what the cluster's native process could not load."""
    compat = verified.manifest.compatibility
    provenance = verified.manifest.provenance
    cluster_version = version_text(cluster.version)
    checks = []
    minimum = compat.get("min_es_version")
    if minimum and cluster.version < parse_version(str(minimum)):
        _refuse(overrides, notes, _too_old(verified.manifest, str(minimum), cluster_version))
    package = verified.manifest.package
    wanted = f" (package minimum_version {package.metadata.get('minimum_version')})" if package else ""
    checks.append(Check("version", f"cluster {cluster_version}, bundle needs {minimum or 'any'}{wanted}"))
    libtorch = libtorch_for(cluster.version)
    traced = compat.get("traced_with_torch") or provenance.get("libraries", {}).get("torch")
    graph = GraphFacts.from_json(compat["graph"]) if isinstance(compat.get("graph"), dict) else None
    file_version = graph.file_version if graph else provenance.get("torchscript_file_version")
    readable = max_file_version(libtorch) if libtorch else None
    if graph is not None:
        reason = refusal(cluster.version, graph)
        if reason:
            ranges = ", ".join(accepting_ranges(graph)) or "none known"
            _refuse(overrides, notes, f"Elasticsearch {cluster_version} would refuse to deploy this model: {reason}",
                    hint_text=f"releases that would deploy it: {ranges}; or pass --force to try anyway")
        checks.append(Check("graph", f"{len(graph.operations)} operations; Elasticsearch {cluster_version} "
                            "accepts the file version, operations and state hooks"))
    if libtorch is None:
        notes.append(f"libtorch of Elasticsearch {cluster_version} is not in the table; not checked")
    elif file_version is not None and readable is not None and int(file_version) > readable:
        _refuse(overrides, notes, f"the cluster's libtorch {libtorch} reads TorchScript files up to version "
                f"{readable}; the bundle's is version {file_version}")
    elif traced and torch_version(str(traced)) > torch_version(libtorch):
        if compat.get("allow_newer_torch"):
            notes.append(f"traced with torch {traced}, newer than the cluster's libtorch {libtorch}; the publisher "
                         "accepted that at export (--allow-newer-torch)")
        else:
            _refuse(overrides, notes, f"the bundle was traced with torch {traced}, newer than the cluster's libtorch "
                    f"{libtorch}", hint_text=f"re-export with torch=={libtorch} or --target-es-version "
                    f"{cluster_version} --allow-newer-torch")
    checks.append(Check("libtorch", f"cluster runs {libtorch or 'unknown'}, bundle traced with {traced or 'unknown'}"
                        + (f", file version {file_version} (reads up to {readable})" if file_version else "")))
    if compat.get("allow_accent_difference"):
        notes.append("the cluster strips accents this model keeps; the publisher accepted that at export "
                     "(--allow-accent-difference): answers on accented text differ from the model's")
    return checks


def _too_old(manifest: Manifest, minimum: str, cluster_version: str) -> str:
    if manifest.package is None:
        return f"the bundle needs Elasticsearch {minimum} or later; the cluster runs {cluster_version}"
    name, wanted = manifest.package.name, manifest.package.metadata.get("minimum_version")
    return (f"the package {name} needs Elasticsearch {minimum} or later (its minimum_version is {wanted}, which "
            f"Elasticsearch checks as: The model [{name}] requires that all nodes are at least version [{wanted}]); "
            f"the cluster runs {cluster_version}")


def _refuse(overrides: Overrides, notes: list[str], reason: str, hint_text: str | None = None) -> None:
    if overrides.force:
        notes.append(f"forced past: {reason}")
        return
    raise PolicyError(reason, outcome=NOTHING_UPLOADED,
                      hint=hint_text or "load it into a cluster that can run it, or pass --force to try anyway")


def _existing(existing: dict[str, Any] | None, verified: Verified, overrides: Overrides, model_id: str,
              notes: list[str]) -> tuple[str, Check]:
    if existing is None:
        return "create", Check("model", f"[{model_id}] absent: will be created")
    ours = verified.cluster_metadata()
    theirs = metadata_of(existing)
    if theirs.get("bundle_id") == ours["bundle_id"] and theirs.get("manifest_sha256") == ours["manifest_sha256"]:
        if existing.get("fully_defined"):
            return "already-loaded", Check("model", f"[{model_id}] already holds this bundle, fully defined")
        return "resume", Check("model", f"[{model_id}] holds this bundle half loaded: will resume")
    held_version = theirs.get("bundle_version")
    described = (f"bundle {theirs.get('bundle_id')} version {held_version}" if theirs
                 else "a model that did not come from an esbundle bundle")
    if isinstance(held_version, int) and held_version > ours["bundle_version"]:
        if not overrides.allow_downgrade:
            raise PolicyError(f"[{model_id}] runs {described}; this bundle's version {ours['bundle_version']} is older "
                              "(rollback refused)", outcome=NOTHING_UPLOADED,
                              hint="pass --replace --allow-downgrade if the downgrade is intended")
        notes.append(f"downgrade from version {held_version} allowed (--allow-downgrade)")
    if not overrides.replace:
        raise PolicyError(f"model id [{model_id}] is already held by {described}", outcome="nothing was touched",
                          hint="pass --replace to delete it and load this bundle, or choose --es-model-id")
    return "replace", Check("model", f"[{model_id}] holds {described}: will be replaced")


def _runtime_checked(cluster: Cluster, verified: Verified, overrides: Overrides, notes: list[str]) -> list[Check]:
    """The signed compatibility block is data from the publisher: a malformed one is a refusal, not a crash."""
    try:
        return _runtime(cluster, verified, overrides, notes)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise PolicyError(f"the manifest's compatibility block cannot be read ({type(exc).__name__}: {exc})",
                          outcome=NOTHING_UPLOADED, hint="ask the publisher for a bundle written by esbundle") from None


def _check_model_id(model_id: str, manifest: Manifest) -> None:
    if manifest.package is not None:
        if model_id != manifest.package.model_id:
            raise UsageError(f"--es-model-id {model_id}: one of Elastic's packages installs only under its own id "
                             f"[{manifest.package.model_id}]", hint="leave out --es-model-id")
        return
    why = model_id_problem(model_id)
    if why:
        raise UsageError(f"--es-model-id: {why}")
    if model_id.startswith("."):
        raise UsageError(f"--es-model-id {model_id}: ids starting with '.' are reserved for Elastic's own models")


def _package_checks(cluster: Cluster, verified: Verified, nodes: dict[str, Any] | None, overrides: Overrides,
                    notes: list[str]) -> tuple[list[Check], str | None]:
    """The variant runs on the ML nodes; the cluster's model repository is not Elastic's server on the internet."""
    package = verified.manifest.package
    assert package is not None
    platform, problem = packages.platform_check(package, nodes, notes)
    if problem:
        _refuse(overrides, notes, problem, hint_text=packages.platform_hint(package))
    repository, setting = packages.repository_check(cluster, package.model_id, notes)
    notes += packages.samples_note(verified.manifest)
    return [platform, repository], setting.value if setting else None


def preflight(cluster: Cluster, verified: Verified, model_id: str, overrides: Overrides) -> LoadPlan:
    m = verified.manifest
    _check_model_id(model_id, m)
    notes: list[str] = []
    checks = [Check("reachable", f"{cluster.connection.target}: {cluster.info.get('cluster_name')} "
                    f"({cluster.info.get('cluster_uuid')}), Elasticsearch {version_text(cluster.version)}"),
              *_licence(cluster, notes)]
    answer = privileges.informative(cluster, "nodes", "list the nodes", lambda c: c.nodes.info(), notes)
    nodes = answer["nodes"] if answer is not None else None
    checks += [_ml_node(nodes)] if nodes is not None else []
    checks += _runtime_checked(cluster, verified, overrides, notes)
    repository = None
    if m.is_package:
        package_checks, repository = _package_checks(cluster, verified, nodes, overrides, notes)
        action, check = packages.held_check(get_model(cluster, model_id), m, model_id, overrides.replace)
        checks += [*package_checks, check]
    else:
        action, check = _existing(get_model(cluster, model_id), verified, overrides, model_id, notes)
        checks.append(check)
    return LoadPlan(model_id=model_id, action=action, part_count=m.definition.part_count,
                    raw_bytes=m.definition.total_length, checks=tuple(checks), notes=tuple(notes),
                    package=m.is_package, repository=repository)


# What preflight (and endpoints.preflight) has read by the time `require_privileges` runs: proven already.
_READ = frozenset({"info", "licence", "nodes", "get_model", "settings", "get_endpoint", "list_endpoints"})


def require_privileges(cluster: Cluster, verified: Verified, plan: LoadPlan, needs: privileges.LoadNeeds,
                       inference_id: str | None = None, endpoint_plan: str | None = None) -> LoadPlan:
    """Before the first write: may this user make every call the rest of the load makes? Asked with
    `_has_privileges`; a missing privilege refuses (a dry run notes it). Where the cluster cannot say (security off,
    an old or restricted API), each call meets its own 403 later."""
    ids = {"id": plan.model_id, **({"inference_id": inference_id} if inference_id else {})}
    release = False
    if plan.action == "replace":
        release = any(not i.startswith(".") for i in endpoints.using_model(cluster, plan.model_id))
    keys = [k for k in privileges.load_calls(replace(needs, dry_run=False), package=plan.package, action=plan.action,
                                             endpoints_to_release=release, samples=bool(verified.manifest.samples))
            if k not in _READ and not (endpoint_plan == "keep" and k in ("put_endpoint", "delete_endpoint"))]
    if not keys:
        return plan
    missing, note = _missing(cluster, keys)
    if note:
        return replace(plan, notes=(*plan.notes, note))
    if not missing:
        return plan
    user, by_privilege = missing
    lacks = "; ".join(f"[{privilege}] needed for " + ", ".join(
        f"{privileges.CALLS[k].shown(ids)} ({privileges.CALLS[k].action})" for k in calls)
        for privilege, calls in by_privilege.items())
    plural = "s" if len(by_privilege) > 1 else ""
    text = f"the user [{user}] lacks the cluster privilege{plural} {lacks} (POST _security/user/_has_privileges)"
    if needs.dry_run:
        return replace(plan, notes=(*plan.notes, f"the load would be refused: {text}"))
    raise ClusterError(text, outcome=NOTHING_UPLOADED, hint=privileges.ROLE_HINT)


def _missing(cluster: Cluster, keys: list[str]) -> tuple[tuple[str, dict[str, list[str]]] | None, str | None]:
    """((user, {privilege: [calls it lacks]}) or None, a note when the cluster could not say)."""
    from elasticsearch import ApiError

    calls = [privileges.CALLS[k] for k in keys]
    exact = cluster.version[:3] >= privileges.INFERENCE_PRIVILEGES_SINCE
    asked = sorted({c.action for c in calls} | {p for c in calls if exact for p in c.exact_grants})
    statuses = tuple(s for s in range(400, 600) if s not in RETRY_STATUSES)
    try:
        answer = cluster.call("check this user's privileges", lambda c: c.security.has_privileges(cluster=asked),
                              ok_statuses=statuses)
    except ApiError as exc:
        if exc.meta.status in (400, 404):  # no such API: security is off, nothing is denied
            return None, None
        return None, (f"the privileges were not checked up front (POST _security/user/_has_privileges answered "
                      f"{exc.meta.status}): a missing one stops the load at the call that needs it")
    held = answer.get("cluster") or {}
    by_privilege: dict[str, list[str]] = {}
    for key, call in zip(keys, calls, strict=True):
        if not (held.get(call.action) or any(held.get(p) for p in call.exact_grants if exact)):
            by_privilege.setdefault(call.privilege_on(cluster.version), []).append(key)
    return ((str(answer.get("username")), by_privilege) if by_privilege else None), None
