"""`esbundle load`: verify offline, preflight the cluster, upload the verified bytes, confirm, deploy, prove.

Nothing is sent before the bundle passed every offline check and the cluster passed every preflight check.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader import receipt as receipts
from loader import settings
from loader.cluster import Cluster, Connection
from loader.compat import version_text
from loader.deploy import SampleOutcome, StartOptions, smoke_test, start
from loader.errors import ClusterError, EsbundleError
from loader.journal import Journal
from loader.preflight import Overrides, Plan, preflight
from loader.upload import UploadStats, upload
from loader.verify import Check, verify_bundle

Echo = Callable[[str], None]


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


def _line(echo: Echo, stage: str) -> Callable[[Check], None]:
    return lambda check: echo(f"ok    {stage:<8} {check.name:<10} {check.detail}")


def run_load(options: LoadOptions, echo: Echo) -> dict[str, Any]:
    started = time.monotonic()
    try:
        verified = verify_bundle(options.bundle, options.trusted, on_check=_line(echo, "verify"),
                                 progress=options.progress)
        manifest = verified.manifest
        model_id = options.model_id or manifest.model_id
        cluster = Cluster(options.connection)
        plan = preflight(cluster, verified, model_id, options.overrides)
    except EsbundleError as exc:
        if "nothing was" not in exc.message:
            exc.message += "; nothing was uploaded"
        # A refused load is an auditable event too: who tried to load what, where, and why it was refused.
        receipts.append(receipts.new_receipt(
            bundle=[str(p) for p in options.bundle], target=options.connection.target,
            model_id=options.model_id, outcome="refused", error=settings.scrub(exc.message),
            exit_code=exc.exit_code))
        raise
    for check in plan.checks:
        _line(echo, "cluster")(check)
    for note in plan.notes:
        echo(f"note  {note}")
    receipt = receipts.new_receipt(
        bundle_id=manifest.bundle_id, bundle_version=manifest.bundle_version,
        manifest_sha256=verified.manifest_sha256, signer_key_id=verified.signer_key_id,
        cluster_uuid=cluster.info.get("cluster_uuid"), cluster_name=cluster.info.get("cluster_name"),
        cluster_version=version_text(cluster.version), target=cluster.connection.target, model_id=model_id,
        action=plan.action, overrides=[n for n in plan.notes if n.startswith(("forced", "downgrade"))]
        + (["replace"] if plan.action == "replace" else []))
    if options.dry_run:
        return {**receipt, "outcome": "dry-run", "plan": _plan_text(plan)}
    stats = UploadStats()
    try:
        if plan.action == "replace":
            cluster.call(f"delete the model [{model_id}] it replaces",
                         lambda c: c.ml.delete_trained_model(model_id=model_id, force=True))
        if plan.action != "already-loaded":
            journal = Journal(str(cluster.info.get("cluster_uuid")), model_id, manifest.bundle_id)
            stats, _ = upload(cluster, verified, model_id, create=plan.action in ("create", "replace"),
                              journal=journal, concurrency=options.connection.concurrency,
                              progress=options.progress)
            echo(f"ok    upload   parts      {stats.parts_sent} sent, {stats.parts_skipped} already held; "
                 f"{stats.bytes_sent} bytes; {cluster.retry.count} retries; fully defined")
        else:
            echo(f"ok    upload   parts      nothing to send: [{model_id}] already holds this bundle, fully defined")
        outcomes: list[SampleOutcome] = []
        allocation = None
        if options.start:
            allocation = start(cluster, model_id, options.start)
            echo(f"ok    deploy   started    {allocation}")
            if options.smoke_test is not False:
                outcomes = _smoke(cluster, verified, model_id, echo)
    except EsbundleError as exc:
        exc.hint = (exc.hint + "; " if exc.hint else "") + \
            "run the same command again to resume: parts the cluster acknowledged are not sent again"
        receipts.append({**receipt, **_stats(stats, cluster), "outcome": "failed", "error": exc.message,
                         "exit_code": exc.exit_code})
        raise
    final = {**receipt, **_stats(stats, cluster), "deployment": allocation,
             "smoke_test": [{"text": o.text, "ok": o.ok, "detail": o.detail} for o in outcomes] or None,
             "seconds": round(time.monotonic() - started, 2),
             "outcome": "already-loaded" if plan.action == "already-loaded" else "loaded"}
    final["audit_log"] = str(receipts.append(final))
    return final


def _smoke(cluster: Cluster, verified: Any, model_id: str, echo: Echo) -> list[SampleOutcome]:
    from loader.content import read_verified
    from loader.format import layout
    from loader.format.canonical import strict_loads

    manifest = verified.manifest
    if not manifest.samples:
        echo("note  no samples recorded in the bundle: smoke test skipped")
        return []
    entry = manifest.file(layout.ROLE_CONFIG)
    config = strict_loads(read_verified(verified.root_of(entry), entry))
    field_name = config["input"]["field_names"][0]
    outcomes = smoke_test(cluster, model_id, manifest.task_type, field_name, manifest.samples)
    for outcome in outcomes:
        echo(f"{'ok' if outcome.ok else 'FAIL':<5} smoke    {outcome.text[:40]!r:<44} {outcome.detail}")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise ClusterError(f"smoke test: the cluster's answers differ from the model's at export for "
                           f"{len(failed)} of {len(outcomes)} sample(s): " + "; ".join(o.detail for o in failed),
                           hint="the model is loaded but does not behave as exported; do not use it")
    return outcomes


def _stats(stats: UploadStats, cluster: Cluster) -> dict[str, Any]:
    return {"parts_sent": stats.parts_sent, "parts_skipped": stats.parts_skipped, "bytes_sent": stats.bytes_sent,
            "retries": cluster.retry.count}


def _plan_text(plan: Plan) -> str:
    if plan.action == "already-loaded":
        return f"nothing to do: [{plan.model_id}] already holds this bundle"
    verb = {"create": "create", "resume": "resume", "replace": "delete and re-create"}[plan.action]
    return (f"would {verb} [{plan.model_id}]: config, vocabulary, {plan.part_count} definition parts, "
            f"{plan.raw_bytes} raw bytes")
