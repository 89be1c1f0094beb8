"""`run_export`: resolve, load, trace, check, write, with each stage timed on stderr.

Everything that can be refused cheaply is refused first, before any weight is downloaded or loaded: options,
an existing output, the torch-versus-cluster policy, the signing key (and its passphrase), the model folder, the
task, the tokenizer. Resolving ends in an immutable `ExportPlan`; each later stage carries it out and returns a
typed value to the next. The bundle is written last, atomically by the writer, so a failure leaves nothing behind.
torch and transformers are imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

import importlib.metadata
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bundler.export import accents, es_config, tasks, tokenization, torch_compat
from bundler.export import source as src
from bundler.export.options import ExportOptions, ExportResult, check_options, derive_es_model_id
from bundler.graph import GraphVerdict, assess
from bundler.keys import SigningKey, load_signing_key
from bundler.stages import StageLog
from bundler.writer.bundle import write_bundle
from bundler.writer.travel import Travel, prepared_travel
from loader.errors import ModelError, UsageError

# source, tasks, tokenization, es_config and torch_compat import nothing heavy at module level (huggingface_hub is
# imported inside source's download function); wrappers, cluster_inputs, trace, check and samples import torch and
# are imported below, inside the functions that need them.

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


@dataclass(frozen=True)
class Checked:
    """What preflight established before anything heavy: the options as checked, the libraries, the target."""

    options: ExportOptions
    versions: Mapping[str, str | None]
    target: torch_compat.ClusterTorch | None
    signing_key: SigningKey


@dataclass(frozen=True, kw_only=True)
class ExportPlan:
    """What the resolve stage decided: the rest of the export only carries it out."""

    checked: Checked
    source: src.Source
    files: Mapping[str, str]  # every file used, with its sha256
    st_layout: tasks.SentenceTransformerLayout | None
    model_dir: Path  # the transformers model (inside a sentence-transformers repository, its module folder)
    facts: tasks.ModelFacts
    task: str
    tokenizer: Any  # what the check and samples tokenize with (the cluster's view of the text)
    own_tokenizer: Any  # the model's own view of the text (sentence-transformers' lowercasing included)
    accent_rule: accents.AccentRule | None  # bert, bert_ja, mpnet: whether each side strips accents
    pooling: tasks.PoolingSettings | None  # a plain encoder's text_embedding: how its token states are pooled
    family: tokenization.Family
    vocabulary: Mapping[str, Any]
    tok_options: Mapping[str, Any]
    max_len: int
    max_len_origin: str

    @property
    def options(self) -> ExportOptions:
        return self.checked.options

    @property
    def torch_version(self) -> str:
        return str(self.checked.versions["torch"])


def preflight(options: ExportOptions, log: StageLog) -> Checked:
    """The checks that need neither the model nor torch itself."""
    options = check_options(options)
    versions = library_versions()
    missing = [name for name in HEAVY if versions[name] is None]
    if missing:
        raise UsageError(f"export needs {', '.join(missing)}, which this install lacks", hint=EXTRA_HINT)
    target = torch_compat.cluster_torch(options.target_es_version) if options.target_es_version else None
    for warning in torch_compat.check_torch(str(versions["torch"]), target, options.allow_newer_torch):
        log.warn(warning)
    return Checked(options=options, versions=versions, target=target,
                   signing_key=load_signing_key(options.signing_key))


def resolve(checked: Checked, log: StageLog) -> ExportPlan:
    """Stage 1: the model's small files; task, pooling, tokenizer family, accents, vocabulary and max length
    decided; then the weights (hub) and the hash of every file used."""
    options = checked.options
    source = (src.hub_source_light(options.hub_model_id, options.revision, options.hub_access_token)
              if options.hub_model_id else src.local_source(Path(options.model_dir or ".")))
    st_layout = tasks.read_sentence_transformer(source.path)
    model_dir = st_layout.transformer_dir if st_layout else source.path
    facts = tasks.read_model_facts(model_dir, sentence_transformer=st_layout is not None,
                                   sparse_encoder=bool(st_layout and st_layout.splade))
    task = tasks.detect_task(facts) if options.task_type == "auto" else options.task_type
    tasks.check_task_fits(task, facts)
    pooling = tasks.embedding_pooling(task, facts, st_layout, options.pooling, options.normalize)
    tokenizer = _load_tokenizer(model_dir)
    family = tokenization.family_of(tokenizer)
    tasks.check_task_tokenization(task, family.name)
    # sentence-transformers may lowercase before its tokenizer; the config then tells the cluster to do the same,
    # and the check must feed the trace the same lowercased text.
    st_lowercase = bool(st_layout and st_layout.do_lower_case)
    vocabulary = tokenization.vocabulary_document(family, tokenizer)
    tok_options = tokenization.tokenization_options(family, tokenizer, st_lowercase=st_lowercase)
    rule, cluster_view, own_view = _text_views(options, family, tokenizer, tok_options, st_lowercase, log)
    max_len, origin = es_config.max_sequence_length(
        override=options.max_model_input_length, st_max_seq_length=st_layout.max_seq_length if st_layout else None,
        tokenizer=tokenizer, family=family.name, task=task, position_limit=facts.position_limit)
    source = src.fetch_weights(source, options.hub_access_token)
    plan = ExportPlan(
        checked=checked, source=source, files=src.hash_files(source.path), st_layout=st_layout, model_dir=model_dir,
        facts=facts, task=task, tokenizer=cluster_view, own_tokenizer=own_view, accent_rule=rule, pooling=pooling,
        family=family, vocabulary=vocabulary, tok_options=tok_options, max_len=max_len, max_len_origin=origin)
    log.say(f"  {task}, tokenization {family.name} ({family.tokenizer_class}), max_sequence_length {max_len} "
            f"({origin}), {len(plan.files)} files" + (f", commit {source.commit_sha}" if source.commit_sha else ""))
    if pooling is not None:
        log.say(f"  embedding: {pooling.describe()} pooling of the token states ({_pooling_origin(pooling)})")
    return plan


def _pooling_origin(pooling: tasks.PoolingSettings) -> str:
    if pooling.chosen == "options":
        return "--pooling/--normalize"
    return "the default: no sentence-transformers configuration, so as SentenceTransformer builds a plain model"


def _text_views(options: ExportOptions, family: tokenization.Family, tokenizer: Any, tok_options: Mapping[str, Any],
                st_lowercase: bool, log: StageLog) -> tuple[accents.AccentRule | None, Any, Any]:
    """The accent rule (refused here when the cluster would tokenize accented text differently, unless allowed),
    the tokenizer fed the text as the cluster leaves it (the check's and the samples'), and the model's own."""
    from bundler.export.cluster_inputs import ClusterTextTokenizer, LowercasingTokenizer

    rule = accents.accent_rule(family.name, tokenizer, do_lower_case=bool(tok_options.get("do_lower_case")),
                               allowed=options.allow_accent_difference)
    for warning in accents.check_accent_rule(rule, options.allow_accent_difference):
        log.warn(warning)
    strip = bool(rule and rule.strip_for_cluster)
    own = LowercasingTokenizer(tokenizer) if st_lowercase else tokenizer
    cluster = ClusterTextTokenizer(tokenizer, lowercase=st_lowercase, strip=strip) if st_lowercase or strip \
        else tokenizer
    return rule, cluster, own


def run_export(options: ExportOptions, *, log: StageLog | None = None) -> ExportResult:
    """Export one model into a signed bundle at `options.out`; raise an EsbundleError on any refusal."""
    log = log or StageLog()
    checked = preflight(options, log)
    quiet_libraries()
    with log.stage("resolve", checked.options.hub_model_id or str(checked.options.model_dir)):
        plan = resolve(checked, log)
    guard_memory(plan, log)
    out = plan.options.out
    # The wheelhouse (if asked for) is built first: a download that fails should not waste a trace.
    with prepared_travel(plan.options.travel) as travel, \
            tempfile.TemporaryDirectory(prefix=".esbundle-export-", dir=out.parent if out.parent.is_dir() else None) \
            as tmp, warnings.catch_warnings():
        # torch deprecates its quantized tensor API (for torchao, which TorchScript cannot save): said at every
        # quantized call, it would bury the stage log.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return _trace_check_write(plan, log, Path(tmp) / "model.pt", travel)


def guard_memory(plan: ExportPlan, log: StageLog) -> None:
    """Refuse, before any weight is loaded and anything written, an export this machine (or its container) has
    not the memory for: the OOM killer would end it without a word (memory.py)."""
    from bundler.export import memory

    weights = memory.model_weights(plan.source.path, sorted(plan.files))
    sparse_encoder = bool(plan.st_layout and plan.st_layout.splade)
    copies = memory.copies_for(quantize=plan.options.quantize, sparse_encoder=sparse_encoder)
    shape = memory.shape_of(memory.read_config(plan.model_dir))
    need = memory.estimate(weights, shape, max_length=plan.max_len, task=plan.task, copies=copies)
    budget = memory.read_budget()
    if budget is None:
        log.say(f"  memory: about {memory.gib(need.total)} needed at the peak ({weights.describe()}); "
                "no limit readable here")
        return
    lower = memory.lowering(weights, shape, max_length=plan.max_len, task=plan.task, copies=copies,
                            unquantized_copies=memory.copies_for(quantize=False, sparse_encoder=sparse_encoder)
                            if plan.options.quantize else None)
    refusal = memory.refusal(need, budget, weights, lower)
    if refusal is not None:
        raise refusal
    log.say(f"  memory: about {memory.gib(need.total)} needed at the peak ({weights.describe()}), "
            f"{memory.gib(budget.total)} can be had ({budget.origin})")


@dataclass(frozen=True)
class OriginalAnswers:
    """The original's answers, taken before tracing (check.py), so that the original can be freed first."""

    check: Any  # check.Expected
    accents: Any  # accent_check.AccentExpected, or None


@dataclass(frozen=True)
class Saved:
    """What tracing leaves behind besides the archive: nothing that holds a weight, so the model can be freed."""

    tracer_warnings: int
    deployment_bytes: int  # what the cluster holds once per deployment
    expected: OriginalAnswers  # with the quantized module's own answers when quantized


@dataclass(frozen=True)
class Proven:
    record: dict[str, Any]  # the trace check, for the manifest's provenance
    samples: list[dict[str, Any]]  # what the loader's smoke test asks the cluster, with the expected answers
    labels: list[str]
    allocation_bytes: int  # what one full-length request allocates


def _trace_check_write(plan: ExportPlan, log: StageLog, definition: Path, travel: Travel) -> ExportResult:
    """Stages 2-5. One copy of the weights at a time: the original answers the check's texts and is traced, saved
    and freed; then the saved archive, loaded back, answers them; it is freed before the writer cuts the
    definition file into parts (reading it part by part)."""
    from bundler.export import memory

    with log.stage("load", f"{plan.task} model, and its answers to the check's texts"):
        loaded = _load_model(plan, log)
        expected = _expected(plan, loaded)
    with log.stage("trace", "quantized int8" if plan.options.quantize else ""):
        saved = _trace(plan, loaded, expected, definition)
        del loaded, expected  # the original's weights (mapped from its files) go here; the archive replaces them
        memory.release()
    with log.stage("check", "traced vs original"):
        verdict, proven = _check(plan, saved, definition, log)
        memory.release()  # the reloaded archive's weights
    with log.stage("write", str(plan.options.out)):
        result = _write(plan, proven, verdict, saved.deployment_bytes, definition, travel)
    return replace(result, stages=tuple(log.times), warnings=tuple(log.warnings))


def _load_model(plan: ExportPlan, log: StageLog) -> Any:
    """The original model and the cluster-shaped wrapper around it (`wrappers.LoadedModel`)."""
    from bundler.export import wrappers

    arity = len(plan.family.inputs)
    if plan.task == "text_expansion" and plan.st_layout and plan.st_layout.splade:
        return wrappers.load_sparse_encoder(plan.source.path, plan.model_dir, plan.facts.architectures, arity,
                                            plan.st_layout.splade, plan.max_len)
    if plan.task != "text_embedding" or plan.st_layout is None or plan.facts.dpr_encoder:
        # A plain encoder's text_embedding: its token states pooled inside the module (a DPR encoder: its own
        # pooled output).
        if plan.pooling is not None and plan.pooling.chosen == "default":
            log.warn("no sentence-transformers configuration: the embedding is the mean of the token states, not "
                     "normalized, as SentenceTransformer builds it for a plain transformers model (--pooling and "
                     "--normalize choose otherwise)")
        return wrappers.load_hf_model(plan.model_dir, plan.task, plan.facts.architectures, arity,
                                      pooling=plan.pooling)
    loaded = wrappers.load_sentence_transformer(plan.source.path, arity, plan.max_len)
    prompts = {k: v for k, v in (getattr(loaded.original, "prompts", None) or {}).items() if v}
    if prompts and not (plan.options.ingest_prefix or plan.options.search_prefix):
        log.warn("the model defines prompts " + ", ".join(f"{k}={v!r}" for k, v in sorted(prompts.items()))
                 + ": Elasticsearch adds them only as prefix_strings; pass --ingest-prefix and "
                 "--search-prefix with the ones the model expects")
    return loaded


def _expected(plan: ExportPlan, loaded: Any) -> OriginalAnswers:
    """Everything the check and the accent record need from the original model."""
    from bundler.export import accent_check, check

    answers = check.expected_answers(loaded, plan.tokenizer, plan.task, plan.max_len)
    accents_expected = None
    if plan.accent_rule is not None:
        accents_expected = accent_check.expected_answers(plan.accent_rule, loaded=loaded,
                                                         own_tokenizer=plan.own_tokenizer, tokenizer=plan.tokenizer,
                                                         task=plan.task, max_length=plan.max_len)
    return OriginalAnswers(check=answers, accents=accents_expected)


def _trace(plan: ExportPlan, loaded: Any, expected: OriginalAnswers, definition: Path) -> Saved:
    """Trace the wrapper (quantized first if asked, in place: the original has answered) into `definition`.
    Returns nothing that holds a weight, so that the caller can free the model."""
    from bundler.export import check, trace, wrappers
    from bundler.export.cluster_inputs import encode

    options = plan.options
    state_bytes = loaded.state_bytes()
    module = loaded.wrapper
    if options.quantize:
        module = wrappers.quantize(module, inplace=True)
        expected = replace(expected, check=check.with_quantized(expected.check, module, plan.tokenizer,
                                                                plan.family.inputs))
    pairs = ["What is traced?", "A pair."] if tasks.is_pair_task(plan.task) else None
    example = encode(plan.tokenizer, plan.family.inputs, trace.TRACE_TEXTS, pairs, max_length=plan.max_len,
                     task=plan.task)
    info = trace.trace_and_save(module, example.args, definition)
    # Packed int8 weights are not parameters: for a quantized model the archive is the better measure.
    deployment_bytes = definition.stat().st_size if options.quantize else state_bytes
    return Saved(tracer_warnings=info.tracer_warnings, deployment_bytes=deployment_bytes, expected=expected)


def _check(plan: ExportPlan, saved: Saved, definition: Path, log: StageLog) -> tuple[GraphVerdict, Proven]:
    """Load the saved archive back (the only copy of the weights held from here on); measure and judge its graph;
    run it on the check's texts against the original's answers; record the samples and one full request's memory."""
    from bundler.export import accent_check, check, samples, trace

    task, tokenizer, inputs = plan.task, plan.tokenizer, plan.family.inputs
    expected = saved.expected
    module = trace.load_saved(definition)
    verdict = assess(definition, plan.checked.target.es_version if plan.checked.target else None,
                     plan.options.allow_unsupported_ops, required=True, module=module)
    verdict.report(log)
    labels = tasks.classification_labels(plan.facts)
    with trace.plain_execution():
        record, allocation = check.judge(expected.check, module, tokenizer, inputs)
        if expected.accents is not None:
            record["accents"] = accent_check.judge(expected.accents, traced=module, tokenizer=tokenizer,
                                                   inputs=inputs, task=task, max_length=plan.max_len)
        sample_list = samples.build_samples(traced=module, tokenizer=tokenizer, inputs=inputs, task=task,
                                            max_length=plan.max_len, labels=labels, quantized=plan.options.quantize,
                                            family=plan.family.name, vocabulary=plan.vocabulary["vocabulary"],
                                            lower_case=bool(plan.tok_options.get("do_lower_case")))
    record["tracer_warnings"] = saved.tracer_warnings
    log.say(f"  worst cosine {record['worst_cosine']}, max |diff| {record['max_abs_diff']}, "
            f"{len(record['cases'])} texts alone, {len(record['padded_batch'])} as one padded batch")
    if "difference" in record.get("accents", {}):
        log.say("  accents: " + accent_summary(record["accents"]))
    effect = record.get("token_types")
    if effect and effect["max_abs_diff"] > 1e-4:
        log.say(f"  note: the cluster sends token type 0 for the second text of a pair, this model was trained with "
                f"1: its answers move by up to {effect['max_abs_diff']} (decision changed for "
                f"{effect['pairs_whose_decision_changes']} of {effect['pairs']} check pairs); the samples record "
                "what the cluster will answer")
    return verdict, Proven(record=record, samples=sample_list, labels=labels, allocation_bytes=allocation)


def _write(plan: ExportPlan, proven: Proven, verdict: GraphVerdict, deployment_bytes: int, definition: Path,
           travel: Travel) -> ExportResult:
    options, task, family = plan.options, plan.task, plan.family
    config = es_config.build_config(
        task=task, family=family.name, tokenization_options=dict(plan.tok_options), max_length=plan.max_len,
        labels=proven.labels,
        embedding_size=proven.samples[0]["expected"]["dimensions"] if task == "text_embedding" else None,
        ingest_prefix=options.ingest_prefix, search_prefix=options.search_prefix,
        description=f"{plan.source.name} for {task}, traced by esbundle with torch {plan.torch_version}",
        per_deployment_memory_bytes=deployment_bytes, per_allocation_memory_bytes=proven.allocation_bytes)
    assert verdict.facts is not None  # assess(required=True) measured the graph or raised
    compatibility = torch_compat.compatibility_record(
        torch_text=plan.torch_version, graph=verdict.facts, target=plan.checked.target,
        allow_newer=options.allow_newer_torch, features=es_config.features_used(config)) | dict(verdict.record)
    compatibility["allow_accent_difference"] = options.allow_accent_difference
    es_model_id = options.es_model_id or derive_es_model_id(plan.source.name)
    manifest = write_bundle(options.out, definition=definition, config=config, vocabulary=plan.vocabulary,
                            signing_key=plan.checked.signing_key, model_id=es_model_id, task_type=task,
                            bundle_version=options.bundle_version, expires_in_days=options.expires_in_days,
                            part_size=options.part_size, provenance=_provenance(plan, proven, verdict),
                            samples=proven.samples, compatibility=compatibility, travel=travel)
    return ExportResult(out=options.out, es_model_id=es_model_id, task_type=task, tokenization=family.name,
                        bundle_id=manifest.bundle_id, definition_bytes=manifest.definition.total_length,
                        part_count=manifest.definition.part_count, source=plan.source.describe(),
                        trace_check=proven.record, compatibility={k: v for k, v in compatibility.items()
                                                                  if k != "graph"},
                        quantized=options.quantize, pooling=plan.pooling.record() if plan.pooling else None)


def _provenance(plan: ExportPlan, proven: Proven, verdict: GraphVerdict) -> dict[str, Any]:
    """Where the model came from and how it was made and proven, signed into the manifest."""
    record = {"source": plan.source.describe(), "files": dict(plan.files),
              "libraries": {k: v for k, v in plan.checked.versions.items() if v},
              "torchscript_file_version": verdict.facts.file_version if verdict.facts else None,
              "quantized": plan.options.quantize, "max_sequence_length_from": plan.max_len_origin,
              "tokenizer_class": plan.family.tokenizer_class, "trace_check": proven.record}
    if plan.pooling is not None:  # a plain encoder's text_embedding: the pooling traced into the module
        record["embedding_pooling"] = plan.pooling.record()
    return record


def accent_summary(record: Mapping[str, Any]) -> str:
    """One line on how far the cluster's answers are from the model's own on accented texts."""
    diff = record["difference"]
    sides = (f"the cluster {'strips' if record['cluster_strips_accents'] else 'keeps'} them, the model "
             f"{'strips' if record['model_strips_accents'] else 'keeps'} them")
    return (f"{sides}; on {diff['texts']} accented texts the cluster's answers differ from the model's own: worst "
            f"cosine {diff['worst_cosine']}, max |diff| {diff['max_abs_diff']}"
            + (f", {diff['other_token_count']} with another token count" if diff["other_token_count"] else ""))
