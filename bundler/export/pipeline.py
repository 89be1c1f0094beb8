"""`run_export`: resolve, load, trace, check, write, with each stage timed on stderr.

Everything that can be refused cheaply is refused first, before any weight is downloaded or loaded: options,
an existing output, the torch-versus-cluster policy, the signing key (and its passphrase), the model folder, the
task, the tokenizer. The bundle is written last, atomically by the writer, so a failure leaves nothing behind.
torch and transformers are imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.export import source as src
from bundler.export import tasks, tokenization, torch_compat
from bundler.export.options import ExportOptions, ExportResult, check_options, derive_es_model_id
from bundler.export.stages import StageLog
from bundler.media import prepared_media, travel_defaults
from bundler.writer import Media
from loader.errors import ModelError, UsageError

# source, tasks, tokenization and torch_compat import nothing heavy at module level (huggingface_hub is imported
# inside source's download function); wrappers, trace, check and samples import torch and are imported below,
# inside the functions that need them.

EXTRA_HINT = "install the export extra on a connected machine: pip install 'esbundle[export]'"
HEAVY = ("torch", "transformers", "huggingface_hub", "sentence_transformers")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    return {name: _version(dist) for name, dist in (
        ("torch", "torch"), ("transformers", "transformers"), ("huggingface_hub", "huggingface_hub"),
        ("sentence_transformers", "sentence-transformers"), ("tokenizers", "tokenizers"),
        ("esbundle", "esbundle"))}


def quiet_libraries() -> None:
    """transformers and sentence-transformers log deprecations and draw progress bars on stderr; the stage log
    is the export's progress, and their chatter would bury it."""
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except ImportError as exc:  # e.g. BertJapaneseTokenizer with MeCab needs fugashi and a dictionary
        raise ModelError(f"{path}: the tokenizer needs a package that is not installed ({exc})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: no usable tokenizer ({str(exc).splitlines()[0]})") from None


@dataclass
class Plan:
    """What the resolve stage decided, before anything heavy: the rest of the export only carries it out."""

    options: ExportOptions
    log: StageLog
    versions: dict[str, str | None]
    target: torch_compat.ClusterTorch | None
    signing_key: Any  # bundler.keys.SigningKey
    source: src.Source | None = None
    files: dict[str, str] | None = None
    layout: tasks.SentenceTransformerLayout | None = None
    model_dir: Path | None = None
    facts: tasks.ModelFacts | None = None
    task: str = ""
    tokenizer: Any = None  # what the check and samples tokenize with (the cluster's view of the text)
    family: tokenization.Family | None = None
    vocabulary: dict[str, Any] | None = None
    tok_options: dict[str, Any] | None = None
    max_len: int = 0
    max_len_origin: str = ""

    @property
    def torch_version(self) -> str:
        return str(self.versions["torch"])


def preflight(options: ExportOptions, log: StageLog) -> Plan:
    """The checks that need neither the model nor torch itself."""
    from bundler.keys import load_signing_key

    options = check_options(options)
    if os.path.lexists(options.out):
        raise UsageError(f"{options.out}: already exists; refusing to overwrite", hint="choose a new --out directory")
    versions = library_versions()
    missing = [name for name in HEAVY if versions[name] is None]
    if missing:
        raise UsageError(f"export needs {', '.join(missing)}, which this install lacks", hint=EXTRA_HINT)
    target = torch_compat.cluster_torch(options.target_es_version) if options.target_es_version else None
    for warning in torch_compat.check_torch(str(versions["torch"]), target, options.allow_newer_torch):
        log.warn(warning)
    return Plan(options=options, log=log, versions=versions, target=target,
                signing_key=load_signing_key(options.signing_key))


def resolve(plan: Plan) -> None:
    """Stage 1: the model's small files; task, tokenizer family, vocabulary and max length decided; then the
    weights (hub) and the hash of every file used."""
    from bundler.export.cluster_inputs import LowercasingTokenizer
    from bundler.export.es_config import max_sequence_length

    options = plan.options
    if options.hub_model_id:
        plan.source = src.hub_source_light(options.hub_model_id, options.revision)
    else:
        plan.source = src.local_source(Path(options.model_dir or "."))
    plan.layout = tasks.read_sentence_transformer(plan.source.path)
    plan.model_dir = plan.layout.transformer_dir if plan.layout else plan.source.path
    plan.facts = tasks.read_model_facts(plan.model_dir, sentence_transformer=plan.layout is not None)
    plan.task = tasks.detect_task(plan.facts) if options.task_type == "auto" else options.task_type
    tasks.check_task_fits(plan.task, plan.facts)
    tokenizer = _load_tokenizer(plan.model_dir)
    plan.family = tokenization.family_of(tokenizer)
    plan.vocabulary = tokenization.vocabulary_document(plan.family, tokenizer)
    st_lowercase = bool(plan.layout and plan.layout.do_lower_case)
    plan.tok_options = tokenization.tokenization_options(plan.family, tokenizer, st_lowercase=st_lowercase)
    # sentence-transformers may lowercase before its tokenizer; the config then tells the cluster to do the same,
    # and the check must feed the trace the same lowercased text.
    plan.tokenizer = LowercasingTokenizer(tokenizer) if st_lowercase else tokenizer
    plan.max_len, plan.max_len_origin = max_sequence_length(
        override=options.max_model_input_length, st_max_seq_length=plan.layout.max_seq_length if plan.layout else None,
        tokenizer=tokenizer, family=plan.family.name, task=plan.task, position_limit=plan.facts.position_limit)
    plan.source = src.fetch_weights(plan.source)
    plan.files = src.hash_files(plan.source.path)
    plan.log.say(f"  {plan.task}, tokenization {plan.family.name} ({plan.family.tokenizer_class}), "
                 f"max_sequence_length {plan.max_len} ({plan.max_len_origin}), {len(plan.files)} files"
                 + (f", commit {plan.source.commit_sha}" if plan.source.commit_sha else ""))


def run_export(options: ExportOptions, *, log: StageLog | None = None) -> ExportResult:
    """Export one model into a signed bundle at `options.out`; raise an EsbundleError on any refusal."""
    log = log or StageLog()
    plan = preflight(options, log)
    quiet_libraries()
    with log.stage("resolve", plan.options.hub_model_id or str(plan.options.model_dir)):
        resolve(plan)
    out = plan.options.out
    # The wheelhouse (if asked for) is built first: a download that fails should not waste a trace.
    with prepared_media(**travel_defaults(plan.options.travel)) as media, \
            tempfile.TemporaryDirectory(prefix=".esbundle-export-", dir=out.parent if out.parent.is_dir() else None) \
            as tmp, warnings.catch_warnings():
        # torch deprecates its quantized tensor API (for torchao, which TorchScript cannot save): said at every
        # quantized call, it would bury the stage log.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return _trace_check_write(plan, Path(tmp) / "model.pt", media)


def _trace_check_write(plan: Plan, definition: Path, media: Media) -> ExportResult:
    """Stages 2-5. The definition is written to a temporary file that the writer cuts into parts."""
    from bundler.export import check, es_config, samples, trace, wrappers
    from bundler.export.cluster_inputs import encode
    from bundler.export.tasks import classification_labels, is_pair_task
    from bundler.graph import graph_facts, judge
    from bundler.writer import write_bundle

    options, log, task, family, tokenizer = plan.options, plan.log, plan.task, plan.family, plan.tokenizer
    with log.stage("load", f"{task} model"):
        arity = len(family.inputs)
        if task == "text_embedding" and not plan.facts.dpr_encoder:
            if plan.layout is None:
                log.warn("no sentence-transformers configuration: the embedding is the mean of the token "
                         "states, as SentenceTransformer builds it for a plain transformers model")
            loaded = wrappers.load_sentence_transformer(plan.source.path, arity, plan.max_len)
            prompts = {k: v for k, v in (getattr(loaded.original, "prompts", None) or {}).items() if v}
            if prompts and not (options.ingest_prefix or options.search_prefix):
                log.warn("the model defines prompts " + ", ".join(f"{k}={v!r}" for k, v in sorted(prompts.items()))
                         + ": Elasticsearch adds them only as prefix_strings; pass --ingest-prefix and "
                         "--search-prefix with the ones the model expects")
        else:
            loaded = wrappers.load_hf_model(plan.model_dir, task, plan.facts.architectures, arity)
        deployment_bytes = loaded.state_bytes()

    with log.stage("trace", "quantized int8" if options.quantize else ""):
        module = wrappers.quantize(loaded.wrapper) if options.quantize else loaded.wrapper
        pairs = ["What is traced?", "A pair."] if is_pair_task(task) else None
        example = encode(tokenizer, family.inputs, trace.TRACE_TEXTS, pairs, max_length=plan.max_len, task=task)
        info = trace.trace_and_save(module, example.args, definition)
        graph = graph_facts(definition)
        graph_record, notes, warnings_ = judge(graph, plan.target.es_version if plan.target else None,
                                               options.allow_unsupported_ops)
        for note in notes:
            log.say(f"  {note}")
        for warning in warnings_:
            log.warn(warning)
        if options.quantize:  # packed int8 weights are not parameters: the archive is the better measure
            deployment_bytes = definition.stat().st_size

    with log.stage("check", "traced vs original"):
        traced = trace.load_saved(definition)
        record = check.run_check(loaded=loaded, traced=traced, tokenizer=tokenizer, inputs=family.inputs, task=task,
                                 max_length=plan.max_len, quantized_module=module if options.quantize else None)
        record["tracer_warnings"] = info.tracer_warnings
        labels = classification_labels(plan.facts)
        sample_list = samples.build_samples(traced=traced, tokenizer=tokenizer, inputs=family.inputs, task=task,
                                            max_length=plan.max_len, labels=labels, quantized=options.quantize)
        # The largest single request: the check's longest case, cut at the max length as the cluster cuts it.
        longest = check.cases_for(task, tokenizer, plan.max_len)[2]
        full = encode(tokenizer, family.inputs, [longest.first], [longest.second] if longest.second else None,
                      max_length=plan.max_len, task=task)
        allocation = trace.allocation_bytes(traced, full.args)
        log.say(f"  worst cosine {record['worst_cosine']}, max |diff| {record['max_abs_diff']}, "
                f"{len(record['cases'])} texts x {len(record['modes'])} modes")
        del loaded, module, traced

    with log.stage("write", str(options.out)):
        config = es_config.build_config(
            task=task, family=family.name, tokenization_options=plan.tok_options or {}, max_length=plan.max_len,
            labels=labels,
            embedding_size=sample_list[0]["expected"]["dimensions"] if task == "text_embedding" else None,
            ingest_prefix=options.ingest_prefix, search_prefix=options.search_prefix,
            description=f"{plan.source.name} for {task}, traced by esbundle with torch {plan.torch_version}",
            per_deployment_memory_bytes=deployment_bytes, per_allocation_memory_bytes=allocation)
        compatibility = torch_compat.compatibility_record(
            torch_text=plan.torch_version, graph=graph, target=plan.target, allow_newer=options.allow_newer_torch,
            features=es_config.features_used(config))
        compatibility.update(graph_record)
        provenance = {"source": plan.source.describe(), "files": plan.files,
                      "libraries": {k: v for k, v in plan.versions.items() if v},
                      "torchscript_file_version": graph.file_version, "quantized": options.quantize,
                      "max_sequence_length_from": plan.max_len_origin, "tokenizer_class": family.tokenizer_class,
                      "trace_check": record}
        es_model_id = options.es_model_id or derive_es_model_id(plan.source.name)
        manifest = write_bundle(options.out, definition=definition, config=config, vocabulary=plan.vocabulary or {},
                                signing_key=plan.signing_key, model_id=es_model_id, task_type=task,
                                bundle_version=options.bundle_version, expires_in_days=options.expires_in_days,
                                part_size=options.part_size, provenance=provenance, samples=sample_list,
                                compatibility=compatibility, media=media)

    return ExportResult(out=options.out, es_model_id=es_model_id, task_type=task, tokenization=family.name,
                        bundle_id=manifest.bundle_id, definition_bytes=manifest.definition.total_length,
                        part_count=manifest.definition.part_count, source=plan.source.describe(),
                        trace_check=record, compatibility={k: v for k, v in compatibility.items() if k != "graph"},
                        quantized=options.quantize, stages=list(log.times), warnings=list(log.warnings))
