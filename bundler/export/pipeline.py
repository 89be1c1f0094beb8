"""`run_export`: resolve, load, trace, check, write, with each stage timed on stderr.

Everything that can be refused cheaply is refused first, before any weight is downloaded or loaded: options,
an existing output, the signing key (and its passphrase), the torch-versus-cluster policy, the model folder, the
task, the tokenizer. The bundle is written last, atomically by the writer, so a failure leaves nothing behind.
torch and transformers are imported inside the function: importing this module stays cheap.
"""
from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from bundler.export.options import ExportOptions, ExportResult, check_options, derive_es_model_id
from bundler.export.stages import StageLog
from loader.errors import ModelError, UsageError

EXTRA_HINT = "install the export extra on a connected machine: pip install 'esbundle[export]'"


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


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except ImportError as exc:  # e.g. BertJapaneseTokenizer with MeCab needs fugashi and a dictionary
        raise ModelError(f"{path}: the tokenizer needs a package that is not installed ({exc})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: no usable tokenizer ({str(exc).splitlines()[0]})") from None


def quiet_libraries() -> None:
    """transformers and sentence-transformers log deprecations and draw progress bars on stderr; the stage log
    is the export's progress, and their chatter would bury it."""
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_export(options: ExportOptions, *, log: StageLog | None = None) -> ExportResult:
    """Export one model into a signed bundle at `options.out`; raise an EsbundleError on any refusal."""
    from bundler.export import source as src
    from bundler.export import tasks, torch_compat
    from bundler.keys import load_signing_key

    options = check_options(options)
    log = log or StageLog()
    if os.path.lexists(options.out):
        raise UsageError(f"{options.out}: already exists; refusing to overwrite", hint="choose a new --out directory")
    versions = library_versions()
    missing = [name for name in ("torch", "transformers", "huggingface_hub", "sentence_transformers")
               if versions[name] is None]
    if missing:
        raise UsageError(f"export needs {', '.join(missing)}, which this install lacks", hint=EXTRA_HINT)
    torch_version = str(versions["torch"])
    target = torch_compat.cluster_torch(options.target_es_version) if options.target_es_version else None
    for warning in torch_compat.check_torch(torch_version, target, options.allow_newer_torch):
        log.warn(warning)
    signing_key = load_signing_key(options.signing_key)
    quiet_libraries()

    described = options.hub_model_id or str(options.model_dir)
    with log.stage("resolve", described):
        if options.hub_model_id:
            source = src.hub_source_light(options.hub_model_id, options.revision)
        else:
            source = src.local_source(Path(options.model_dir or "."))
        layout = tasks.read_sentence_transformer(source.path)
        model_dir = layout.transformer_dir if layout else source.path
        facts = tasks.read_model_facts(model_dir)
        facts = tasks.ModelFacts(facts.architectures, facts.model_type, facts.labels, layout is not None)
        task = tasks.detect_task(facts) if options.task_type == "auto" else options.task_type
        tasks.check_task_fits(task, facts)
        from bundler.export import tokenization

        tokenizer = _load_tokenizer(model_dir)
        family = tokenization.family_of(tokenizer)
        vocabulary = tokenization.vocabulary_document(family, tokenizer)
        tok_options = tokenization.tokenization_options(family, tokenizer,
                                                        st_lowercase=bool(layout and layout.do_lower_case))
        from bundler.export.es_config import max_sequence_length

        max_len, max_len_origin = max_sequence_length(
            override=options.max_model_input_length, st_max_seq_length=layout.max_seq_length if layout else None,
            tokenizer=tokenizer, family=family.name, task=task)
        source = src.fetch_weights(source)
        files = src.hash_files(source.path)
        log.say(f"  {task}, tokenization {family.name} ({family.tokenizer_class}), max_sequence_length {max_len} "
                f"({max_len_origin}), {len(files)} files"
                + (f", commit {source.commit_sha}" if source.commit_sha else ""))

    with tempfile.TemporaryDirectory(prefix=".esbundle-export-",
                                     dir=options.out.parent if options.out.parent.is_dir() else None) as tmp, \
            warnings.catch_warnings():
        # torch deprecates its quantized tensor API (for torchao, which TorchScript cannot save): said once per
        # quantized call, it would bury the stage log.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return _heavy(options=options, log=log, source=source, files=files, layout=layout, model_dir=model_dir,
                      facts=facts, task=task, tokenizer=tokenizer, family=family, vocabulary=vocabulary,
                      tok_options=tok_options, max_len=max_len, max_len_origin=max_len_origin, target=target,
                      torch_version=torch_version, versions=versions, signing_key=signing_key, workdir=Path(tmp))


def _heavy(*, options: ExportOptions, log: StageLog, source: Any, files: dict[str, str], layout: Any,
           model_dir: Path, facts: Any, task: str, tokenizer: Any, family: Any, vocabulary: dict[str, Any],
           tok_options: dict[str, Any], max_len: int, max_len_origin: str, target: Any, torch_version: str,
           versions: dict[str, str | None], signing_key: Any, workdir: Path) -> ExportResult:
    from bundler.export import check, es_config, samples, torch_compat, trace, wrappers
    from bundler.export.cluster_inputs import encode
    from bundler.export.tasks import classification_labels, is_pair_task
    from bundler.graph import graph_facts
    from bundler.writer import write_bundle

    with log.stage("load", f"{task} model"):
        arity = len(family.inputs)
        if task == "text_embedding" and not facts.dpr_encoder:
            if layout is None:
                log.warn("no sentence-transformers configuration: the embedding is the mean of the token "
                         "states, as SentenceTransformer builds it for a plain transformers model")
            loaded = wrappers.load_sentence_transformer(source.path, arity, max_len)
        else:
            loaded = wrappers.load_hf_model(model_dir, task, facts.architectures, arity)
        deployment_bytes = loaded.state_bytes()

    with log.stage("trace", "quantized int8" if options.quantize else ""):
        module = wrappers.quantize(loaded.wrapper) if options.quantize else loaded.wrapper
        pairs = ["What is traced?", "A pair."] if is_pair_task(task) else None
        example = encode(tokenizer, family.inputs, trace.TRACE_TEXTS, pairs, max_length=max_len, task=task)
        definition = workdir / "model.pt"
        info = trace.trace_and_save(module, example.args, definition)
        graph = graph_facts(definition)
        for warning in torch_compat.check_graph(graph, target):
            log.warn(warning)
        if options.quantize:
            deployment_bytes = definition.stat().st_size

    with log.stage("check", "traced vs original"):
        traced = trace.load_saved(definition)
        record = check.run_check(loaded=loaded, traced=traced, tokenizer=tokenizer, inputs=family.inputs,
                                 task=task, max_length=max_len,
                                 quantized_module=module if options.quantize else None)
        labels = classification_labels(facts)
        sample_list = samples.build_samples(traced=traced, tokenizer=tokenizer, inputs=family.inputs, task=task,
                                            max_length=max_len, labels=labels, quantized=options.quantize)
        # The largest single request: the check's longest case, cut at the max length like the cluster cuts it.
        longest = check.cases_for(task, tokenizer, max_len)[2]
        full = encode(tokenizer, family.inputs, [longest.first], [longest.second] if longest.second else None,
                      max_length=max_len, task=task)
        allocation = trace.allocation_bytes(traced, full.args)
        log.say(f"  worst cosine {record['worst_cosine']}, max |diff| {record['max_abs_diff']}, "
                f"{len(record['cases'])} texts x {len(record['modes'])} modes")
        del loaded, module, traced

    with log.stage("write", str(options.out)):
        embedding_size = sample_list[0]["expected"]["dimensions"] if task == "text_embedding" else None
        es_model_id = options.es_model_id or derive_es_model_id(source.name)
        config = es_config.build_config(
            task=task, family=family.name, tokenization_options=tok_options, max_length=max_len, labels=labels,
            embedding_size=embedding_size, ingest_prefix=options.ingest_prefix, search_prefix=options.search_prefix,
            description=f"{source.name} for {task}, traced by esbundle with torch {torch_version}",
            per_deployment_memory_bytes=deployment_bytes, per_allocation_memory_bytes=allocation)
        compatibility = torch_compat.compatibility_record(
            torch_text=torch_version, graph=graph, target=target, allow_newer=options.allow_newer_torch,
            features=es_config.features_used(config))
        record.update(tracer_warnings=info.tracer_warnings)
        provenance = {"source": source.describe(), "files": files,
                      "libraries": {k: v for k, v in versions.items() if k != "tokenizers" or v},
                      "torchscript_file_version": graph.file_version, "quantized": options.quantize,
                      "max_sequence_length_from": max_len_origin, "tokenizer_class": family.tokenizer_class,
                      "trace_check": record}
        manifest = write_bundle(options.out, definition=definition, config=config, vocabulary=vocabulary,
                                signing_key=signing_key, model_id=es_model_id, task_type=task,
                                bundle_version=options.bundle_version, expires_in_days=options.expires_in_days,
                                part_size=options.part_size, provenance=provenance, samples=sample_list,
                                compatibility=compatibility)

    return ExportResult(out=options.out, es_model_id=es_model_id, task_type=task, tokenization=family.name,
                        bundle_id=manifest.bundle_id, definition_bytes=manifest.definition.total_length,
                        part_count=manifest.definition.part_count, source=source.describe(), trace_check=record,
                        compatibility={k: v for k, v in compatibility.items() if k != "graph"},
                        quantized=options.quantize, stages=list(log.times),
                        warnings=list(log.warnings))
