"""The offline commands (verify, inspect) and the group with its single error boundary.

Thin: parse, call one library function, print. Results on stdout, progress and errors on stderr.
The connected side's commands are added to the same group by `bundler.cli`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from loader import __version__, settings
from loader.errors import EXIT_CODES, EsbundleError, IncompleteError, SignatureError
from loader.inspect import describe, render
from loader.keys import load_trusted_keys
from loader.verify import Check, verify_bundle

DEBUG = "ESBUNDLE_DEBUG"


class _Group(click.Group):
    """Turns every EsbundleError into its message and its class's exit code, with no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EsbundleError as exc:
            click.echo(settings.scrub(exc.render()), err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            # An unexpected error: its message may quote a credential, and a traceback would show it again.
            if settings.get(DEBUG):
                raise
            click.echo(settings.scrub(f"unexpected error: {type(exc).__name__}: {exc}"), err=True)
            click.echo(f"hint: set {DEBUG}=1 for a traceback, and report it", err=True)
            ctx.exit(1)


_EPILOG = "Exit codes: " + "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items())


@click.group(cls=_Group, epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="esbundle")
def cli() -> None:
    """Carry NLP models for Elasticsearch across an air gap: export, verify, load."""


trusted_key_option = click.option(
    "--trusted-key", "trusted_keys", multiple=True, type=click.Path(path_type=Path),
    help=f"Public key (or directory of keys) to trust; repeatable. Default: ${settings.TRUSTED_KEYS}.")


def trusted_keys_from(flag_values: tuple[Path, ...], *, required: bool) -> dict[str, Any]:
    paths = settings.trusted_key_paths(flag_values)
    if not paths:
        if required:
            raise SignatureError("no trusted public key given; refusing to trust whatever key the bundle names",
                                 hint=f"pass --trusted-key PUB or set {settings.TRUSTED_KEYS}")
        return {}
    return load_trusted_keys(paths)


@cli.command()
@click.argument("bundle", nargs=-1, required=True, type=click.Path(path_type=Path))
@trusted_key_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def verify(bundle: tuple[Path, ...], trusted_keys: tuple[Path, ...], as_json: bool) -> None:
    """Check a bundle's signature and every byte, offline. Nothing is uploaded.

    BUNDLE is a bundle directory, or any of its volumes (vol001, ...) as they arrive: each given volume is checked
    and the missing ones are listed (exit code 8 when everything given is correct but volumes are missing)."""
    def line(check: Check) -> None:
        if not as_json:
            click.echo(f"ok    {check.name:<10} {check.detail}")

    try:
        verified = verify_bundle(bundle, trusted_keys_from(trusted_keys, required=True), on_check=line,
                                 progress=False if as_json else None)
    except EsbundleError as exc:
        where = ", ".join(map(str, bundle))
        exc.message = (f"{where}: {exc.message}" + (". Bundle REJECTED; nothing was uploaded"
                                                     if not isinstance(exc, IncompleteError) else ""))
        if as_json:
            click.echo(json.dumps({"verified": False, "exit_code": exc.exit_code, "error": exc.message,
                                   "problems": [str(p) for p in exc.problems]}))
        raise
    m = verified.manifest
    if as_json:
        click.echo(json.dumps({"verified": True, "bundle_id": m.bundle_id, "model_id": m.model_id,
                               "manifest_sha256": verified.manifest_sha256, "signer_key_id": verified.signer_key_id,
                               "checks": [{"name": c.name, "detail": c.detail} for c in verified.checks]}))
    else:
        click.echo(f"VERIFIED  {m.model_id} ({m.task_type}), bundle {m.bundle_id} version {m.bundle_version}: "
                   "every check passed")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@trusted_key_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(bundle: Path, trusted_keys: tuple[Path, ...], as_json: bool) -> None:
    """Show what a bundle holds. The signature is checked only when a trusted key is given."""
    info = describe(bundle, trusted_keys_from(trusted_keys, required=False))
    click.echo(json.dumps(info, indent=2, sort_keys=True) if as_json else render(info))


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@trusted_key_option
def copy(source: Path, dest: Path, trusted_keys: tuple[Path, ...]) -> None:
    """Copy a bundle (or one volume) to DEST, flush it, read it back and verify it.

    Resumable: files already on DEST and correct are kept. The signature is checked when a trusted key is given;
    the checksums always."""
    from loader.copy import copy_bundle

    report = copy_bundle(source, dest, trusted_keys_from(trusted_keys, required=False), click.echo)
    click.echo(f"COPIED   {source} -> {dest}: the medium holds the bundle"
               + ("" if report.signature_checked else " (checksums checked, signature not checked)"))


# The cluster commands live in their own module; importing it registers them on this group.
from loader import cli_cluster  # noqa: E402,F401
