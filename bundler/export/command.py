"""The `esbundle export` click command: parse options, call `run_export`, print the result.

Registered into the `esbundle` group by `bundler.cli`. Importing this module must stay cheap and must work
without torch (the offline install imports the CLI); the pipeline imports torch only when it runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bundler.export.options import DEFAULT_EXPIRES_IN_DAYS, TASK_CHOICES, ExportOptions
from bundler.media import media_options
from loader.format.layout import DEFAULT_PART_SIZE
from loader.units import SIZE


def _expires(value: str) -> int | None:
    if value.strip().lower() in ("0", "never"):
        return None
    try:
        days = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of days (or 0 / never)") from None
    if days < 0:
        raise click.BadParameter("must not be negative")
    return days


@click.command()
@click.option("--hub-model-id", metavar="ID", help="Hugging Face hub repository (ORG/NAME).")
@click.option("--revision", metavar="REV", help="Branch, tag or commit of the hub repository (default: main).")
@click.option("--model-dir", type=click.Path(path_type=Path), help="Local model folder (save_pretrained layout).")
@click.option("--task-type", required=True, metavar="TASK",
              help="One of: " + ", ".join(TASK_CHOICES) + " (auto: from the architecture).")
@click.option("--signing-key", required=True, type=click.Path(path_type=Path), help="Private key from keygen.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--es-model-id", metavar="ID", help="Model id in Elasticsearch (default: derived from the source).")
@click.option("--quantize", is_flag=True, help="Dynamic int8 quantisation of the Linear layers.")
@click.option("--max-model-input-length", type=int, metavar="N", help="Max tokens per input (overrides detection).")
@click.option("--ingest-prefix", metavar="S", help="Text the cluster prepends at ingest (e.g. 'passage: ').")
@click.option("--search-prefix", metavar="S", help="Text the cluster prepends at search (e.g. 'query: ').")
@click.option("--target-es-version", metavar="V", help="Elasticsearch version the bundle is for (checks PyTorch).")
@click.option("--allow-newer-torch", is_flag=True, help="Export even if torch is newer than the target's libtorch.")
@click.option("--allow-unsupported-ops", is_flag=True,
              help="Write the bundle even if the target release would refuse its graph (recorded).")
@click.option("--part-size", type=SIZE, default=str(DEFAULT_PART_SIZE), show_default=True,
              help="Raw bytes per definition part (e.g. 1M, 512K).")
@click.option("--bundle-version", type=int, default=1, show_default=True, help="Raise for each new bundle of a model.")
@click.option("--expires-in", "expires_in", default=str(DEFAULT_EXPIRES_IN_DAYS), show_default=True,
              metavar="DAYS", help="Days until the bundle expires (0 or never: no expiry).")
@media_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def export(hub_model_id: str | None, revision: str | None, model_dir: Path | None, task_type: str,
           signing_key: Path, out: Path, es_model_id: str | None, quantize: bool,
           max_model_input_length: int | None, ingest_prefix: str | None, search_prefix: str | None,
           target_es_version: str | None, allow_newer_torch: bool, allow_unsupported_ops: bool, part_size: int,
           bundle_version: int, expires_in: str, as_json: bool, **travel: Any) -> None:
    """Trace a Hugging Face model for Elasticsearch, check it, and write a signed bundle (connected side)."""
    from bundler.export.pipeline import EXTRA_HINT, run_export
    from loader.errors import UsageError

    try:
        expires_in_days = _expires(expires_in)
    except click.BadParameter as exc:
        raise UsageError(f"--expires-in: {exc.message}") from None
    options = ExportOptions(
        hub_model_id=hub_model_id, revision=revision, model_dir=model_dir, task_type=task_type,
        signing_key=signing_key, out=out, es_model_id=es_model_id, quantize=quantize,
        max_model_input_length=max_model_input_length, ingest_prefix=ingest_prefix, search_prefix=search_prefix,
        target_es_version=target_es_version, allow_newer_torch=allow_newer_torch,
        allow_unsupported_ops=allow_unsupported_ops, part_size=part_size,
        bundle_version=bundle_version, expires_in_days=expires_in_days, travel=travel)
    try:
        result = run_export(options)
    except ModuleNotFoundError as exc:  # torch or transformers absent: the offline install
        raise UsageError(f"esbundle export needs {exc.name}, which is not installed here", hint=EXTRA_HINT) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
        return
    check = result.trace_check
    click.echo(f"wrote {result.out}: {result.es_model_id} ({result.task_type}, {result.tokenization}), "
               f"{result.part_count} parts, {result.definition_bytes} bytes, bundle {result.bundle_id}")
    click.echo(f"trace check: worst cosine {check['worst_cosine']}, max |diff| {check['max_abs_diff']}"
               + (" (quantized tolerance)" if result.quantized else ""))
    click.echo(f"needs Elasticsearch {result.compatibility['min_es_version']}+ with libtorch "
               f">= {result.compatibility['required_libtorch']}")


def main() -> None:
    """`python -m bundler.export.command export ...`: the esbundle CLI (same group, same error boundary), for
    environments where the console script is not installed."""
    from bundler.cli import main as esbundle

    esbundle()


if __name__ == "__main__":
    main()
