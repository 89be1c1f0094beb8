"""`esbundle verify`: check a bundle's signature and every byte, offline."""
from __future__ import annotations

from pathlib import Path

import click

from loader.bundle.verify import Check, verify_bundle
from loader.cli.options import trusted_key_option, trusted_keys_from
from loader.cli.output import emit, emit_json
from loader.errors import EsbundleError, IncompleteError

REJECTED = "Bundle REJECTED; nothing was uploaded"


@click.command("verify")
@click.argument("bundle", nargs=-1, required=True, type=click.Path(path_type=Path))
@trusted_key_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
@click.option("--definition-sha256", "whole_definition", is_flag=True,
              help="Also hash the parts joined against the definition's signed sha256 (one more pass over every "
                   "byte; load and repository always do).")
def command(bundle: tuple[Path, ...], trusted_keys: tuple[Path, ...], as_json: bool, whole_definition: bool) -> None:
    """Check a bundle's signature and every byte, offline. Nothing is uploaded.

    BUNDLE is a bundle directory, or any of its volumes (vol001, ...) as they arrive: each given volume is checked
    and the missing ones are listed (exit code 8 when everything given is correct but volumes are missing)."""
    def line(check: Check) -> None:
        if not as_json:
            emit(f"ok    {check.name:<10} {check.detail}")

    try:
        verified = verify_bundle(bundle, trusted_keys_from(trusted_keys, required=True), on_check=line,
                                 progress=False if as_json else None, whole_definition=whole_definition)
    except EsbundleError as exc:
        # Volumes still to come are not a rejection: what was given is correct.
        exc.add_context(subject=", ".join(map(str, bundle)),
                        outcome=None if isinstance(exc, IncompleteError) else REJECTED)
        if as_json:
            emit_json({"verified": False, "exit_code": exc.exit_code, "error": exc.statement,
                       "problems": [str(p) for p in exc.problems]})
        raise
    m = verified.manifest
    if as_json:
        emit_json({"verified": True, "bundle_id": m.bundle_id, "model_id": m.model_id,
                   "manifest_sha256": verified.manifest_sha256, "signer_key_id": verified.signer_key_id,
                   "checks": [{"name": c.name, "detail": c.detail} for c in verified.checks]})
    else:
        emit(f"VERIFIED  {m.model_id} ({m.task_type}), bundle {m.bundle_id} version {m.bundle_version}: "
                   "every check passed")
