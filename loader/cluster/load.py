"""`esbundle load`: verify offline, preflight the cluster, upload the verified bytes, confirm, deploy, prove.

Nothing is sent before the bundle passed every offline check and the cluster passed every preflight check. One of
Elastic's packages is not uploaded: the cluster imports it from its model repository (package_import.py), and the
load confirms it holds exactly the bundle's package before it goes on like any other.
Progress reaches the caller as events (`Passed`, `Noted`, `SampleOutcome`); the command line formats them, so the
text and `--json` outputs come from one source. Every attempt, refused, failed or done, leaves a receipt.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader import settings
from loader.bundle.verify import Verified, verify_bundle
from loader.cluster import endpoints
from loader.cluster import receipt as receipts
from loader.cluster.client import Cluster, Connection
from loader.cluster.deploy import StartOptions, start
from loader.cluster.journal import Journal
from loader.cluster.package_import import IMPORT_TIMEOUT, import_package
from loader.cluster.preflight import NOTHING_UPLOADED, LoadPlan, Overrides, preflight, require_privileges
from loader.cluster.privileges import LoadNeeds
from loader.cluster.smoke import SampleOutcome, smoke_test
from loader.cluster.upload import UploadStats, upload
from loader.errors import ClusterError, EsbundleError
from loader.format import layout
from loader.format.manifest import Manifest
from loader.format.package import DEFAULT_FIELD
from loader.releases.libtorch import version_text

RESUME_STEP = "run the same command again to resume: parts the cluster acknowledged are not sent again"
PACKAGE_KEPT_STEP = "run the same command again: the imported package is kept and not imported twice"


@dataclass(frozen=True)
class LoadOptions:
    bundle: Sequence[Path]
    trusted: Mapping[str, Ed25519PublicKey]
    connection: Connection
    model_id: str | None = None
    overrides: Overrides = field(default_factory=Overrides)
    dry_run: bool = False
    start: StartOptions | None = None
    smoke_test: bool | None = None  # default: on when starting
    progress: bool | None = None
    endpoint: endpoints.EndpointOptions | None = None  # an inference endpoint over the model (starts it)


@dataclass(frozen=True)
class Passed:
    """A check that passed, at one stage of the load (verify, cluster, upload, deploy)."""

    stage: str
    name: str
    detail: str


@dataclass(frozen=True)
class Noted:
    """Something the operator should know that is not a failure (an override used, a fact not checked)."""

    text: str


LoadEvent = Passed | Noted | SampleOutcome
OnEvent = Callable[[LoadEvent], None]


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    outcome: str  # loaded | already-loaded | dry-run
    model_id: str
    bundle_id: str
    plan: LoadPlan
    receipt: Mapping[str, Any]  # the audit record, as appended to the log (and `--json`)
    audit_log: Path | None = None  # None for a dry run, which records nothing


def _ignore(event: LoadEvent) -> None:
    pass


def run_load(options: LoadOptions, on_event: OnEvent = _ignore) -> LoadResult:
    started = time.monotonic()
    verified, cluster, plan, endpoint_plan = _verify_and_preflight(options, on_event)
    for check in plan.checks:
        on_event(Passed("cluster", check.name, check.detail))
    for note in plan.notes:
        on_event(Noted(note))
    record = _identity(verified, cluster, plan)
    if options.endpoint:
        record["inference_endpoint"] = {"inference_id": options.endpoint.inference_id, "plan": endpoint_plan,
                                        "task_type": endpoints.ENDPOINT_TASK[verified.manifest.task_type]}
        on_event(Passed("cluster", "endpoint", f"[{options.endpoint.inference_id}]: {endpoint_plan}"))
    if options.dry_run:
        return LoadResult(outcome="dry-run", model_id=plan.model_id, bundle_id=verified.manifest.bundle_id,
                          plan=plan, receipt={**record, "outcome": "dry-run", "plan": plan.text})
    stats, sent = UploadStats(), False
    try:
        stats = _upload(cluster, verified, plan, options, on_event)
        sent = True
        allocation, outcomes = _deploy(cluster, verified, plan.model_id, options, on_event, endpoint_plan)
    except EsbundleError as exc:
        step = RESUME_STEP if not plan.package else PACKAGE_KEPT_STEP if sent else None  # import errors say theirs
        if step:
            exc.add_context(next_step=step)
        receipts.append({**record, **_stats(stats, cluster), "outcome": "failed",
                         "error": settings.scrub(exc.statement), "exit_code": exc.exit_code})
        raise
    outcome = "already-loaded" if plan.action == "already-loaded" else "loaded"
    final = {**record, **_stats(stats, cluster), "deployment": allocation,
             "smoke_test": [{"text": o.text, "ok": o.ok, "detail": o.detail} for o in outcomes] or None,
             "seconds": round(time.monotonic() - started, 2), "outcome": outcome}
    path = receipts.append(final)
    return LoadResult(outcome=outcome, model_id=plan.model_id, bundle_id=verified.manifest.bundle_id, plan=plan,
                      receipt={**final, "audit_log": str(path)}, audit_log=path)


def _verify_and_preflight(options: LoadOptions,
                          on_event: OnEvent) -> tuple[Verified, Cluster, LoadPlan, str | None]:
    """Everything that may refuse before the first write; a refusal is receipted too (who tried what, where)."""
    endpoint_plan = None
    try:
        # The whole-definition sha256 is checked as the parts go out, before the last one (upload.py); a package's
        # by the repository that serves it and by the cluster on import.
        verified = verify_bundle(options.bundle, options.trusted, progress=options.progress, whole_definition=False,
                                 on_check=lambda check: on_event(Passed("verify", check.name, check.detail)))
        if options.endpoint:
            endpoints.check_options(verified.manifest.task_type, options.endpoint)
        cluster = Cluster(options.connection)
        plan = preflight(cluster, verified, options.model_id or verified.manifest.model_id, options.overrides)
        if options.endpoint:
            endpoint_plan = endpoints.preflight(cluster, plan.model_id, verified.manifest.task_type,
                                                options.endpoint, replace=options.overrides.replace)
        needs = LoadNeeds(start=options.start is not None, endpoint=options.endpoint is not None,
                          replace=options.overrides.replace, smoke=options.smoke_test is not False,
                          dry_run=options.dry_run)
        plan = require_privileges(cluster, verified, plan, needs,
                                  options.endpoint.inference_id if options.endpoint else None, endpoint_plan)
    except EsbundleError as exc:
        exc.add_context(outcome=NOTHING_UPLOADED)
        receipts.append(receipts.new_receipt(
            bundle=[str(p) for p in options.bundle], target=options.connection.target,
            model_id=options.model_id, outcome="refused", error=settings.scrub(exc.statement),
            exit_code=exc.exit_code))
        raise
    return verified, cluster, plan, endpoint_plan


def _identity(verified: Verified, cluster: Cluster, plan: LoadPlan) -> dict[str, Any]:
    """The receipt's head: which bundle, signed by whom, into which cluster, under which id, doing what."""
    manifest = verified.manifest
    package = {"package": _package_record(manifest, plan)} if manifest.package else {}
    return receipts.new_receipt(
        bundle_id=manifest.bundle_id, bundle_version=manifest.bundle_version,
        manifest_sha256=verified.manifest_sha256, signer_key_id=verified.signer_key_id,
        cluster_uuid=cluster.info.get("cluster_uuid"), cluster_name=cluster.info.get("cluster_name"),
        cluster_version=version_text(cluster.version), target=cluster.connection.target, model_id=plan.model_id,
        action=plan.action, overrides=plan.overrides, **package)


def _package_record(manifest: Manifest, plan: LoadPlan) -> dict[str, Any]:
    assert manifest.package is not None
    return {"name": manifest.package.name, "sha256": manifest.definition.sha256,
            "size": manifest.definition.total_length, "model_repository": plan.repository}


def _upload(cluster: Cluster, verified: Verified, plan: LoadPlan, options: LoadOptions,
            on_event: OnEvent) -> UploadStats:
    model_id = plan.model_id
    if plan.action == "already-loaded":
        on_event(Passed("upload", "import" if plan.package else "parts",
                        f"nothing to send: [{model_id}] already holds this bundle, fully defined"))
        return UploadStats()
    if plan.action == "replace":
        _release_endpoints(cluster, model_id, on_event)
        cluster.call(f"delete the model [{model_id}] it replaces",
                     lambda c: c.ml.delete_trained_model(model_id=model_id, force=True))
    if plan.package:
        return _import(cluster, verified, plan, options, on_event)
    journal = Journal(str(cluster.info.get("cluster_uuid")), model_id, verified.manifest.bundle_id)
    stats, _ = upload(cluster, verified, model_id, create=plan.action in ("create", "replace"), journal=journal,
                      concurrency=options.connection.concurrency, progress=options.progress)
    on_event(Passed("upload", "parts", f"{stats.parts_sent} sent, {stats.parts_skipped} already held; "
                    f"{stats.bytes_sent} bytes; {cluster.retry.count} retries; the parts joined match the "
                    "definition sha256; fully defined"))
    return stats


def _import(cluster: Cluster, verified: Verified, plan: LoadPlan, options: LoadOptions,
            on_event: OnEvent) -> UploadStats:
    """The cluster imports the package from its model repository; nothing is uploaded part by part."""
    imported = import_package(cluster, verified, plan.model_id, plan.repository,
                              timeout=max(options.connection.timeout, IMPORT_TIMEOUT))
    for warning in imported.warnings:
        on_event(Noted(f"the cluster warned: {warning}"))
    on_event(Passed("upload", "import", imported.detail))
    return UploadStats()


def _release_endpoints(cluster: Cluster, model_id: str, on_event: OnEvent) -> None:
    """Elasticsearch deletes a model an endpoint still uses only by force, leaving the endpoint broken: the
    endpoints go first."""
    for inference_id in endpoints.using_model(cluster, model_id):
        if inference_id.startswith("."):  # Elastic's default endpoints cannot be deleted; they serve the new model
            on_event(Noted(f"the reserved inference endpoint [{inference_id}] uses [{model_id}]: kept"))
            continue
        endpoints.delete_endpoint(cluster, inference_id)
        on_event(Noted(f"deleted the inference endpoint [{inference_id}] that used the replaced model; "
                       f"--inference-id {inference_id} creates it again"))


def _deploy(cluster: Cluster, verified: Verified, model_id: str, options: LoadOptions, on_event: OnEvent,
            endpoint_plan: str | None) -> tuple[str | None, list[SampleOutcome]]:
    """Start when asked (an endpoint starts its own deployment), then (unless told not to) prove the cluster
    answers as the model did at export, through `_infer` and the endpoint."""
    if not options.start:
        return None, []
    deployment_id = model_id
    if options.endpoint and endpoint_plan:
        allocation = endpoints.create_endpoint(cluster, model_id, verified.manifest.task_type, options.start,
                                               options.endpoint, endpoint_plan)
        deployment_id = options.endpoint.inference_id
        on_event(Passed("deploy", "endpoint", allocation))
    else:
        allocation = start(cluster, model_id, options.start)
        on_event(Passed("deploy", "started", allocation))
    if options.smoke_test is False:
        return allocation, []
    outcomes = _smoke(cluster, verified, deployment_id, on_event)
    if options.endpoint and verified.manifest.samples:
        outcomes += _judged(endpoints.endpoint_smoke(cluster, options.endpoint.inference_id,
                                                     verified.manifest.task_type, verified.manifest.samples),
                            on_event)
    return allocation, outcomes


def _smoke(cluster: Cluster, verified: Verified, model_id: str, on_event: OnEvent) -> list[SampleOutcome]:
    manifest = verified.manifest
    if not manifest.samples:
        on_event(Noted("no samples recorded in the bundle: smoke test skipped"))
        return []
    return _judged(smoke_test(cluster, model_id, manifest.task_type, _input_field(verified), manifest.samples),
                   on_event)


def _input_field(verified: Verified) -> str:
    """The field `_infer` reads: the config's, or for a package the one the load gave it."""
    if verified.manifest.is_package:
        return DEFAULT_FIELD
    return str(verified.read_json(layout.ROLE_CONFIG)["input"]["field_names"][0])


def _judged(outcomes: list[SampleOutcome], on_event: OnEvent) -> list[SampleOutcome]:
    for outcome in outcomes:
        on_event(outcome)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise ClusterError(f"smoke test: the cluster's answers differ from the model's at export for "
                           f"{len(failed)} of {len(outcomes)} sample(s): " + "; ".join(o.detail for o in failed),
                           hint="the model is loaded but does not behave as exported; do not use it")
    return outcomes


def _stats(stats: UploadStats, cluster: Cluster) -> dict[str, Any]:
    return {"parts_sent": stats.parts_sent, "parts_skipped": stats.parts_skipped, "bytes_sent": stats.bytes_sent,
            "retries": cluster.retry.count}
