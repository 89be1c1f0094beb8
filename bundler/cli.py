"""The `esbundle` entry point: the offline group from `loader.cli`, plus the connected side's commands.

Nothing heavy is imported here: `esbundle verify` must start on an install without torch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from bundler.keys import generate_keypair, load_signing_key, read_passphrase
from bundler.media import media_options, prepared_media
from loader.cli import cli
from loader.errors import ModelError, UsageError
from loader.format import layout
from loader.format.canonical import JsonProblem, strict_loads
from loader.units import SIZE


@cli.command()
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Directory for the key files.")
@click.option("--name", default="esbundle", show_default=True, help="File name stem: NAME.key and NAME.pub.")
@click.option("--no-passphrase", is_flag=True, help="Write the private key unencrypted (an explicit choice).")
def keygen(out_dir: Path, name: str, no_passphrase: bool) -> None:
    """Make an Ed25519 signing key pair; the passphrase comes from $ESBUNDLE_KEY_PASSPHRASE or a prompt."""
    passphrase = None if no_passphrase else read_passphrase(confirm=True)
    pair = generate_keypair(out_dir, name, passphrase)
    click.echo(f"private key  {pair.private_path}  (mode 0600{', encrypted' if passphrase else ', NOT encrypted'})")
    click.echo(f"public key   {pair.public_path}  (give this to the operators of the closed network)")
    click.echo(f"key id       {pair.key_id}")


def _read_json(path: Path, what: str) -> Any:
    try:
        return strict_loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    except JsonProblem as exc:
        raise ModelError(f"{what} {path}: {exc}") from None


@cli.command()
@click.option("--definition", required=True, type=click.Path(path_type=Path), help="TorchScript file traced elsewhere.")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Elasticsearch trained-model config JSON (the PUT body).")
@click.option("--vocab", "vocab_path", required=True, type=click.Path(path_type=Path), help="Vocabulary JSON.")
@click.option("--signing-key", required=True, type=click.Path(path_type=Path), help="Private key from keygen.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--es-model-id", help="Model id in Elasticsearch (default: the definition file's name).")
@click.option("--bundle-version", default=1, show_default=True, type=int, help="Raise for each new bundle of a model.")
@click.option("--expires-in", "expires_in", default=365, show_default=True, type=int,
              help="Days until the bundle expires (0: never).")
@click.option("--part-size", default=str(layout.DEFAULT_PART_SIZE), type=SIZE, show_default=True,
              help="Raw bytes per definition part (e.g. 1M).")
@click.option("--target-es-version", metavar="V", help="Refuse a model this Elasticsearch release would not deploy.")
@click.option("--allow-unsupported-ops", is_flag=True,
              help="Write the bundle even if the target release would refuse its graph (recorded).")
@media_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def pack(definition: Path, config_path: Path, vocab_path: Path, signing_key: Path, out: Path, es_model_id: str | None,
         bundle_version: int, expires_in: int, part_size: int, target_es_version: str | None,
         allow_unsupported_ops: bool, as_json: bool, **travel: Any) -> None:
    """Pack a TorchScript model traced elsewhere into a signed bundle (bring your own model)."""
    from bundler.writer import write_bundle

    config = _read_json(config_path, "config")
    vocabulary = _read_json(vocab_path, "vocabulary")
    if not isinstance(config, dict) or not isinstance(config.get("inference_config"), dict):
        raise ModelError(f"config {config_path}: has no inference_config object")
    task_type = next(iter(config["inference_config"]), "")
    model_id = es_model_id or definition.stem.lower()
    if not 0 <= expires_in <= 36_500:
        raise UsageError(f"--expires-in {expires_in}: must be 0 (never) to 36500 days")
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"--out {out}: {out.parent} is a file, not a directory")
    if os.path.lexists(out):
        raise UsageError(f"{out}: already exists; refusing to overwrite", hint="choose a new --out directory")
    key = load_signing_key(signing_key)
    compatibility = _graph_record(definition, target_es_version, allow_unsupported_ops)
    with prepared_media(**travel) as media:
        manifest = write_bundle(out, definition=definition, config=config, vocabulary=vocabulary, signing_key=key,
                                model_id=model_id, task_type=task_type, bundle_version=bundle_version,
                                expires_in_days=expires_in or None, part_size=part_size,
                                provenance={"source": {"kind": "pack", "definition": definition.name},
                                            "torchscript_file_version": compatibility.get("graph", {}).get(
                                                "file_version")},
                                compatibility=compatibility, media=media)
    summary = {"bundle": str(out), "bundle_id": manifest.bundle_id, "model_id": manifest.model_id,
               "volumes": manifest.volumes,
               "task_type": manifest.task_type, "parts": manifest.definition.part_count,
               "definition_bytes": manifest.definition.total_length, "signer_key_id": manifest.signer_key_id}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"wrote {out}: {manifest.model_id} ({manifest.task_type}), {manifest.definition.part_count} parts, "
                   + (f"{manifest.volumes} volumes, " if manifest.volumes else "")
                   + f"bundle {manifest.bundle_id}, signed by {manifest.signer_key_id[:16]}")


def _graph_record(definition: Path, target: str | None, allow_unsupported: bool) -> dict[str, Any]:
    """Measure the archive as the cluster will (needs torch); judge it against the target release."""
    from loader.compat import parse_version

    try:
        target_version = parse_version(target) if target else None
    except ValueError as exc:
        raise UsageError(f"--target-es-version: {exc}") from None
    try:
        from bundler.graph import graph_facts, judge

        facts = graph_facts(definition)
    except ModuleNotFoundError:
        if target:
            raise UsageError("--target-es-version needs torch to read the model's graph",
                             hint="pip install torch (the version the cluster runs), or leave out the target") from None
        click.echo("warning: torch is not installed: the graph was not measured, and the loader cannot check it "
                   "against the cluster before uploading", err=True)
        return {}
    except ModelError as exc:
        if target:
            raise
        click.echo(f"warning: {exc.message}: the graph was not measured", err=True)
        return {}
    record, notes, warnings = judge(facts, target_version, allow_unsupported)
    for text in warnings:
        click.echo(f"warning: {text}", err=True)
    for text in notes:
        click.echo(text, err=True)
    return record


def _register_export() -> None:
    try:
        from bundler.export.command import export
    except ImportError:  # the export package may be absent from a trimmed install
        return
    cli.add_command(export)


_register_export()


def main() -> None:
    cli(prog_name="esbundle")
