"""`esbundle pack`: bring your own TorchScript model; it is packed into a signed bundle as it is."""
from __future__ import annotations

from pathlib import Path

import click

from bundler.cli.options import (
    allow_unsupported_option,
    bundle_version_option,
    expires_option,
    json_option,
    out_option,
    part_size_option,
    signing_key_option,
)
from bundler.cli.travel import travel_options
from bundler.options import parse_expires
from bundler.pack import PackOptions, run_pack
from bundler.writer.travel import TravelOptions
from loader.cli.output import emit, emit_json


@click.command("pack")
@click.option("--definition", required=True, type=click.Path(path_type=Path), help="TorchScript file traced elsewhere.")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Elasticsearch trained-model config JSON (the PUT body).")
@click.option("--vocab", "vocab_path", required=True, type=click.Path(path_type=Path), help="Vocabulary JSON.")
@signing_key_option
@out_option
@click.option("--es-model-id", help="Model id in Elasticsearch (default: the definition file's name).")
@bundle_version_option
@expires_option
@part_size_option
@click.option("--target-es-version", metavar="V", help="Refuse a model this Elasticsearch release would not deploy.")
@allow_unsupported_option
@travel_options
@json_option
def command(definition: Path, config_path: Path, vocab_path: Path, signing_key: Path, out: Path,
            es_model_id: str | None, bundle_version: int, expires_in: str, part_size: int,
            target_es_version: str | None, allow_unsupported_ops: bool, travel: TravelOptions, as_json: bool) -> None:
    """Pack a TorchScript model traced elsewhere into a signed bundle (bring your own model)."""
    result = run_pack(PackOptions(
        definition=definition, config=config_path, vocabulary=vocab_path, signing_key=signing_key, out=out,
        es_model_id=es_model_id, bundle_version=bundle_version, expires_in_days=parse_expires(expires_in),
        part_size=part_size, target_es_version=target_es_version, allow_unsupported_ops=allow_unsupported_ops,
        travel=travel))
    m = result.manifest
    if as_json:
        emit_json(result.to_json())
    else:
        emit(f"wrote {out}: {m.model_id} ({m.task_type}), {m.definition.part_count} parts, "
                   + (f"{m.volumes} volumes, " if m.volumes else "")
                   + f"bundle {m.bundle_id}, signed by {m.signer_key_id[:16]}")
