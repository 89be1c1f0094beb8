"""The `inference_config` of a PUT trained model body, parsed as Elasticsearch's strict task parsers do.

Owns which tasks a release knows (the strictly parsed inference configs registered by
MlInferenceNamedXContentProvider), the fields each task's STRICT parser declares (not the inference-time update
parsers), each task's constructor checks in their order and words, and the task config a stored model shows.
fill_mask and text_classification are ObjectParsers whose build() runs after the object is read; the other tasks
are ConstructingObjectParsers, whose constructor refusals arrive wrapped in "Failed to build [task] ...".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors, tokenizations
from .errors import EsError
from .jsonscan import Path
from .releases import Version
from .xcontent import (
    Failed,
    NotEnded,
    Source,
    expect_object,
    failed_to_build,
    java_list,
    parse_named,
    read_field,
    unknown_field,
)

NATIVE_INDEX = ".ml-inference-native-000002"  # InferenceIndexConstants.nativeDefinitionStore()
# Inference configs of boosted-tree and learning-to-rank models: real Elasticsearch configs the stand-in does
# not emulate (it answers them with errors.not_emulated, in the words api.py uses for tree models).
TREE_TASKS = ("classification", "regression", "learning_to_rank")
NOT_EMULATED_TREES = "tree ensemble and other non-PyTorch trained models"
_COMMON = {"vocabulary": "object", "tokenization": "object", "results_field": "string"}


@dataclass(frozen=True)
class Task:
    fields: dict[str, str]
    constructing: bool = True  # a ConstructingObjectParser (else an ObjectParser plus build())
    since: Version = (8, 0, 0)  # the config's minimal MlConfigVersion / TransportVersion
    field_since: dict[str, Version] = field(default_factory=dict)


TASKS = {
    "fill_mask": Task(_COMMON | {"num_top_classes": "int", "mask_token": "string"}, constructing=False),
    "ner": Task(_COMMON | {"classification_labels": "string_array"}),
    "pass_through": Task(dict(_COMMON)),
    "question_answering": Task(_COMMON | {"num_top_classes": "int", "max_answer_length": "int"}, since=(8, 3, 0)),
    "text_classification": Task(_COMMON | {"classification_labels": "string_array", "num_top_classes": "int"},
                                constructing=False),
    "text_embedding": Task(_COMMON | {"embedding_size": "int"}, field_since={"embedding_size": (8, 8, 0)}),
    "text_expansion": Task(dict(_COMMON), since=(8, 7, 0)),
    "text_similarity": Task(_COMMON | {"span_score_combination_function": "string"}, since=(8, 5, 0)),
    "zero_shot_classification": Task(_COMMON | {"classification_labels": "string_array",
                                                "hypothesis_template": "string", "multi_label": "bool",
                                                "labels": "string_array"}),
}


def registered(version: Version) -> set[str]:
    return {name for name, task in TASKS.items() if version >= task.since} | set(TREE_TASKS)


def parse(value: dict[str, Any], src: Source, version: Version) -> dict[str, Any]:
    """The named inference config, as stored; Failed (to be wrapped by the top-level parser) or NotEnded."""
    def entry(name: str, settings: Any, path: Path) -> dict[str, Any]:
        if name in TREE_TASKS:
            raise errors.not_emulated(NOT_EMULATED_TREES)
        return parse_task(name, settings, src, path, version)

    name, stored = parse_named("inference_config", value, registered(version), src, ("inference_config",), entry)
    return {name: stored}


def parse_task(task: str, settings: Any, src: Source, path: Path, version: Version) -> dict[str, Any]:
    spec = TASKS[task]
    expect_object(task, settings, src, path)
    declared = {name: kind for name, kind in spec.fields.items() if version >= spec.field_since.get(name, (0, 0, 0))}
    read: dict[str, Any] = {}
    for name, raw in settings.items():
        field_path = (*path, name)
        if name not in declared:
            raise unknown_field(task, name, declared, src, field_path)
        read[name] = read_field(task, name, declared[name], raw, src, field_path)
        if name == "vocabulary":
            error = errors.bad_request("illegal setting [vocabulary] on inference model creation")
            raise Failed(error, src.value(field_path)).wrap(task, name)
        if name == "tokenization":
            read[name] = _tokenization(task, raw, src, field_path, version)
    return _construct(task, read, src.end(path))


def _tokenization(task: str, value: dict[str, Any], src: Source, path: Path, version: Version) -> Any:
    def entry(kind: str, options: Any, entry_path: Path) -> dict[str, Any]:
        return tokenizations.parse_entry(kind, options, src, entry_path, version)

    try:
        return parse_named("tokenization", value, tokenizations.registered(version), src, path, entry)
    except NotEnded as ended:
        raise Failed(ended.error, ended.at) from None  # thrown by parseSub, outside the field's wrapper
    except Failed as failure:
        raise failure.wrap(task, "tokenization") from None


def _construct(task: str, read: dict[str, Any], at: Any) -> dict[str, Any]:
    if task == "zero_shot_classification" and "classification_labels" not in read:
        raise Failed(errors.illegal_argument("Required [classification_labels]"), at)  # a required argument
    kind, options = read.get("tokenization") or tokenizations.default()
    try:
        specific = _CONSTRUCTORS[task](read, kind, options)
    except EsError as cause:
        if TASKS[task].constructing:
            raise failed_to_build(task, cause, at) from None
        if cause.status == 501:
            raise
        raise Failed(cause, at) from None
    common = {"vocabulary": {"index": NATIVE_INDEX}, "tokenization": {kind: options}}
    first = {k: specific.pop(k) for k in ("num_top_classes", "max_answer_length") if task == "question_answering"}
    results = {"results_field": read["results_field"]} if "results_field" in read else {}
    return first | common | _ordered(task, specific, results)


def _ordered(task: str, specific: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """toXContent's order: results_field before the task's own trailing fields where the task writes it so."""
    trailing = {"fill_mask": ("mask_token",), "text_embedding": ("embedding_size",),
                "text_similarity": ("span_score_combination_function",)}.get(task, ())
    head = {k: v for k, v in specific.items() if k not in trailing}
    return head | results | {k: specific[k] for k in trailing if k in specific}


def _no_windowing(task: str, options: dict[str, Any]) -> None:
    if options["span"] != tokenizations.UNSET_SPAN:
        raise errors.bad_request(
            f"[{task}] does not support windowing long text sequences; configured span [{options['span']}]")


def _fill_mask(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    # FillMaskConfig.Builder.build(): the requested mask token first, then the constructor's checks.
    mask = tokenizations.mask_token(kind, options)
    requested = read.get("mask_token")
    if requested is not None and requested != mask:
        raise errors.illegal_argument(f"Mask token requested was [{requested}] but must be [{mask}] for this model")
    _no_windowing("fill_mask", options)
    return {"num_top_classes": read.get("num_top_classes", 5), "mask_token": mask}


def _ner(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    labels = read.get("classification_labels") or []
    if labels:
        bad = [label for label in labels if not label.upper().startswith(("I-", "B-", "I_", "B_", "O"))]
        if bad:
            raise errors.bad_request(
                f"[ner] only allows IOB tokenization tagging for classification labels; provided {java_list(bad)}")
        if not any(label.upper() == "O" for label in labels):
            raise errors.bad_request(
                "[ner] only allows IOB tokenization tagging for classification labels; missing outside label [O]")
    _no_windowing("ner", options)
    return {"classification_labels": labels} if labels else {}


def _pass_through(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    _no_windowing("pass_through", options)
    return {}


def _question_answering(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    top, length = read.get("num_top_classes", 0), read.get("max_answer_length", 15)
    if top < 0:
        raise errors.bad_request(f"[num_top_classes] must be greater than or equal to [0]; provided [{top}]")
    if length <= 0:
        raise errors.bad_request(f"[max_answer_length] must be greater than [0]; provided [{length}]")
    return {"num_top_classes": top, "max_answer_length": length}


def _text_classification(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    labels = read.get("classification_labels")
    if labels is None or len(labels) < 2:
        raise errors.bad_request(
            f"[text_classification] requires at least 2 [classification_labels]; provided {java_list(labels)}")
    # The builder keeps num_top_classes in an int, so an absent value is 0 (the constructor's -1 never applies).
    return {"classification_labels": labels, "num_top_classes": read.get("num_top_classes", 0)}


def _text_embedding(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    size = read.get("embedding_size")
    if size is not None and size <= 0:
        raise errors.bad_request(f"[embedding_size] must be a number greater than 0; configured size [{size}]")
    _no_windowing("text_embedding", options)
    return {"embedding_size": size} if size is not None else {}


def _text_expansion(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    if kind != "bert":
        raise errors.bad_request(f"text expansion models must be configured with BERT tokenizer, [{kind}] given")
    return {}


def _text_similarity(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    function = read.get("span_score_combination_function")
    if function is not None and function.upper() not in ("MAX", "MEAN"):
        raise errors.illegal_argument("No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel."
                                      f"TextSimilarityConfig.SpanScoreFunction.{function.upper()}")
    return {"span_score_combination_function": (function or "max").lower()}


_ZERO_SHOT_LABELS = "[contradiction, entailment, neutral]"  # a TreeSet, printed sorted


def _zero_shot(read: dict[str, Any], kind: str, options: dict[str, Any]) -> dict[str, Any]:
    labels = read["classification_labels"]
    if len(labels) != 3:
        raise errors.bad_request(f"[classification_labels] must contain exactly the three values {_ZERO_SHOT_LABELS}")
    bad = [label.lower() for label in labels if label.lower() not in ("contradiction", "entailment", "neutral")]
    if bad:
        raise errors.bad_request(f"[classification_labels] must contain exactly the three values "
                                 f"{_ZERO_SHOT_LABELS}. Invalid labels {java_list(bad)}")
    chosen = read.get("labels")
    if chosen is not None and not chosen:
        raise errors.bad_request("[labels] must not be empty")
    _no_windowing("zero_shot_classification", options)
    stored = {"classification_labels": labels, "multi_label": bool(read.get("multi_label", False)),
              "hypothesis_template": read.get("hypothesis_template", "This example is {}.")}
    return stored | ({"labels": chosen} if chosen is not None else {})


_CONSTRUCTORS: dict[str, Callable[[dict[str, Any], str, dict[str, Any]], dict[str, Any]]] = {
    "fill_mask": _fill_mask,
    "ner": _ner,
    "pass_through": _pass_through,
    "question_answering": _question_answering,
    "text_classification": _text_classification,
    "text_embedding": _text_embedding,
    "text_expansion": _text_expansion,
    "text_similarity": _text_similarity,
    "zero_shot_classification": _zero_shot,
}
