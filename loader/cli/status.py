"""`esbundle status`: the cluster's models that came from bundles."""
from __future__ import annotations

from typing import Any

import click

from loader.cli.connection import build_connection, connection_options
from loader.cli.output import emit, emit_json
from loader.cluster.client import Cluster
from loader.cluster.status import bundled_models


@click.command("status")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(as_json: bool, **conn: Any) -> None:
    """List the cluster's models that came from bundles: bundle, version, signer, defined, deployment, endpoints."""
    notes: list[str] = []
    rows = bundled_models(Cluster(build_connection(**conn)), notes)
    for note in notes:  # what could not be read (stderr: stdout stays the table or the JSON)
        emit(f"note  {note}", err=True)
    if as_json:
        emit_json([r.to_json() for r in rows], sort_keys=True)
        return
    if not rows:
        emit("no model in this cluster came from an esbundle bundle")
        return
    emit(f"{'model id':<30} {'bundle':<38} {'ver':>3}  {'signer':<16} {'defined':<7}  {'deployment':<12} endpoints")
    for r in rows:
        emit(f"{r.model_id:<30} {r.bundle_id!s:<38} {r.bundle_version!s:>3}  {str(r.signer_key_id)[:16]:<16} "
             f"{'yes' if r.fully_defined else 'NO':<7}  {r.deployment:<12} {', '.join(r.endpoints) or '-'}")
