"""`esbundle export`: parse options, call `run_export`, print the result.

Importing this module imports no torch (the offline install assembles the same command line); without the export
extra the command itself says what to install.
"""
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
from bundler.elastic.export import PackageExportOptions, PackageExportResult, run_package_export
from bundler.export import ExportOptions, ExportResult, run_export
from bundler.export.options import AUTO, HUB_ID, POOLING_CHOICES, TASK_CHOICES, hub_model_id_directory
from bundler.export.pipeline import EXTRA_HINT, accent_summary
from bundler.options import parse_expires
from bundler.writer.travel import TravelOptions
from loader import settings
from loader.cli.output import emit, emit_json
from loader.errors import UsageError


@click.command("export")
@click.option("--hub-model-id", metavar="ID",
              help="Hugging Face hub repository (ORG/NAME), or a local model folder as with eland (an existing "
                   "directory wins; the default --es-model-id is then derived from the path as given).")
@click.option("--hub-access-token", metavar="TOKEN",
              help=f"Hub token for private or gated models (default: ${settings.HUB_ACCESS_TOKEN}, then "
                   f"${settings.HF_TOKEN}, then the login saved by `hf auth login`). Never recorded.")
@click.option("--revision", metavar="REV", help="Branch, tag or commit of the hub repository (default: main).")
@click.option("--model-dir", type=click.Path(path_type=Path), help="Local model folder (save_pretrained layout).")
@click.option("--elastic-model", metavar="NAME",
              help="One of Elastic's packaged models from its model repository (elser_model_2_linux-x86_64, "
                   "elser_model_2, multilingual-e5-small, rerank-v1, ...).")
@click.option("--elastic-models-url", metavar="URL",
              help="Model repository to fetch --elastic-model from (default: $ESBUNDLE_ELASTIC_MODELS_URL, then "
                   "https://ml-models.elastic.co/).")
@click.option("--task-type", metavar="TASK", default=AUTO, show_default=True,
              help="One of: " + ", ".join(TASK_CHOICES) + " (auto: from the architecture; dashes as well).")
@signing_key_option
@out_option
@click.option("--es-model-id", metavar="ID", help="Model id in Elasticsearch (default: derived from the source).")
@click.option("--quantize", is_flag=True, help="Dynamic int8 quantisation of the Linear layers.")
@click.option("--max-model-input-length", type=int, metavar="N", help="Max tokens per input (overrides detection).")
@click.option("--ingest-prefix", metavar="S", help="Text the cluster prepends at ingest (e.g. 'passage: ').")
@click.option("--search-prefix", metavar="S", help="Text the cluster prepends at search (e.g. 'query: ').")
@click.option("--target-es-version", metavar="V", help="Elasticsearch version the bundle is for (checks PyTorch).")
@click.option("--allow-newer-torch", is_flag=True, help="Export even if torch is newer than the target's libtorch.")
@click.option("--pooling", type=click.Choice(POOLING_CHOICES),
              help="text_embedding of a plain transformers model: mean of the tokens (default, as "
                   "sentence-transformers builds it), cls (first token) or max.")
@click.option("--normalize/--no-normalize", default=None,
              help="text_embedding of a plain transformers model: L2-normalise the pooled vector (default: no).")
@click.option("--allow-accent-difference", is_flag=True,
              help="Export a model whose tokenizer lower-cases but keeps accents, which the cluster strips "
                   "(measured and recorded).")
@allow_unsupported_option
@part_size_option
@bundle_version_option
@expires_option
@travel_options
@json_option
def command(hub_model_id: str | None, hub_access_token: str | None, revision: str | None, model_dir: Path | None,
            elastic_model: str | None, elastic_models_url: str | None, task_type: str, signing_key: Path, out: Path,
            es_model_id: str | None, quantize: bool,
            max_model_input_length: int | None, ingest_prefix: str | None, search_prefix: str | None,
            target_es_version: str | None, allow_newer_torch: bool, pooling: str | None, normalize: bool | None,
            allow_accent_difference: bool, allow_unsupported_ops: bool, part_size: int, bundle_version: int,
            expires_in: str, travel: TravelOptions, as_json: bool) -> None:
    """Trace a Hugging Face model for Elasticsearch, check it, and write a signed bundle (connected side); or carry
    one of Elastic's packaged models (--elastic-model)."""
    settings.register_secret(hub_access_token)  # before anything can print it
    context = click.get_current_context()
    if elastic_model is not None:
        _refuse_model_flags(context)
        package = PackageExportOptions(
            name=elastic_model, models_url=elastic_models_url, signing_key=signing_key, out=out,
            target_es_version=target_es_version, allow_unsupported_ops=allow_unsupported_ops, part_size=part_size,
            bundle_version=bundle_version, expires_in_days=parse_expires(expires_in), travel=travel)
        result = run_package_export(package)
        emit_json(result.to_json(), sort_keys=True) if as_json else emit(*package_summary(result))
        return
    if elastic_models_url is not None:
        raise UsageError("--elastic-models-url applies to --elastic-model only")
    if hub_model_id and HUB_ID.fullmatch(hub_model_id) and hub_model_id_directory(hub_model_id):
        emit(f"note: --hub-model-id {hub_model_id}: a directory of that name exists here, so it is exported (as "
             "eland does); run from another directory to download it from the hub", err=True)
    options = ExportOptions(
        hub_model_id=hub_model_id, hub_access_token=hub_access_token, revision=revision, model_dir=model_dir,
        task_type=task_type,
        signing_key=signing_key, out=out, es_model_id=es_model_id, quantize=quantize,
        max_model_input_length=max_model_input_length, ingest_prefix=ingest_prefix, search_prefix=search_prefix,
        target_es_version=target_es_version, allow_newer_torch=allow_newer_torch, pooling=pooling,
        normalize=normalize, allow_accent_difference=allow_accent_difference,
        allow_unsupported_ops=allow_unsupported_ops, part_size=part_size,
        bundle_version=bundle_version, expires_in_days=parse_expires(expires_in), travel=travel)
    try:
        result = run_export(options)
    except ModuleNotFoundError as exc:  # torch or transformers absent: the offline install
        raise UsageError(f"esbundle export needs {exc.name}, which is not installed here", hint=EXTRA_HINT) from None
    if as_json:
        emit_json(result.to_json(), sort_keys=True)
    else:
        emit(*summary(result))


# What a package brings with it (its config, its tokenization, its weights): flags that would change those.
_MODEL_FLAGS = ("hub_model_id", "hub_access_token", "revision", "model_dir", "task_type", "es_model_id", "quantize",
                "max_model_input_length", "ingest_prefix", "search_prefix", "allow_newer_torch", "pooling",
                "normalize", "allow_accent_difference")


def _refuse_model_flags(context: click.Context) -> None:
    given = [name for name in _MODEL_FLAGS
             if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{flags}: not for --elastic-model, whose package fixes its model, id and configuration")


def package_summary(result: PackageExportResult) -> tuple[str, ...]:
    lines = [f"wrote {result.out}: {result.es_model_id} (package {result.package}, {result.task_type}, "
             f"{result.tokenization}), {result.part_count} parts, {result.definition_bytes} bytes, "
             f"bundle {result.bundle_id}",
             f"fetched from {result.source_url}; size and sha256 match the package metadata"]
    lines.append(f"graph measured; {result.samples} samples recorded for the smoke test" if result.graph_measured
                 else "graph NOT measured and no samples recorded (torch is not installed here)")
    lines.append(f"needs Elasticsearch {result.compatibility['min_es_version']}+")
    return tuple(lines)


def summary(result: ExportResult) -> tuple[str, ...]:
    check = result.trace_check
    lines = [
        f"wrote {result.out}: {result.es_model_id} ({result.task_type}, {result.tokenization}), "
        f"{result.part_count} parts, {result.definition_bytes} bytes, bundle {result.bundle_id}",
        f"trace check: worst cosine {check['worst_cosine']}, max |diff| {check['max_abs_diff']}"
        + (" (quantized tolerance)" if result.quantized else "")]
    if result.pooling:
        lines.append(f"embedding: {result.pooling['mode']} pooling, "
                     f"{'L2-normalized' if result.pooling['normalize'] else 'not normalized'} "
                     f"({'as asked' if result.pooling['chosen'] == 'options' else 'default'})")
    if "difference" in check.get("accents", {}):
        lines.append("accents: " + accent_summary(check["accents"])
                     + (" (--allow-accent-difference)" if check["accents"]["allow_accent_difference"] else ""))
    lines.append(f"needs Elasticsearch {result.compatibility['min_es_version']}+ with libtorch "
                 f">= {result.compatibility['required_libtorch']}")
    return tuple(lines)
