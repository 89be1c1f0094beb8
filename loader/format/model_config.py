"""Elasticsearch's rules for a trained-model config and a vocabulary document.

The writer refuses to pack what the cluster would refuse, and the verifier checks again: a bundle that would
only fail at upload, inside the closed network, is caught on the connected side.
Rules from Elasticsearch's trained-model API (PUT _ml/trained_models, PUT .../vocabulary).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MODEL_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?$")
MAX_MODEL_ID_LEN = 64

TASK_TYPES = (
    "fill_mask", "ner", "pass_through", "question_answering", "text_classification", "text_embedding",
    "text_expansion", "text_similarity", "zero_shot_classification",
)
TOKENIZATIONS = ("bert", "bert_ja", "mpnet", "roberta", "xlm_roberta", "deberta_v2")
CONFIG_FIELDS = (
    "model_type", "inference_config", "input", "metadata", "description", "tags", "model_size_bytes",
    "platform_architecture", "prefix_strings",
)
# Set by the server; a config that carries one is refused ("illegal to set [x] at inference model creation").
SERVER_FIELDS = ("location", "version", "created_by", "create_time", "license_level", "model_package")


def model_id_problem(model_id: str) -> str | None:
    if len(model_id) > MAX_MODEL_ID_LEN:
        return f"model id {model_id!r} cannot contain more than {MAX_MODEL_ID_LEN} characters"
    if model_id == "_all" or not MODEL_ID_RE.match(model_id):
        return (f"model id {model_id!r} can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; "
                "must start and end with alphanumeric")
    return None


def config_problems(config: Any, task_type: str) -> list[str]:
    """Everything Elasticsearch would refuse in this config, plus a task that disagrees with the manifest."""
    if not isinstance(config, Mapping):
        return ["must be a JSON object"]
    problems: list[str] = []
    for name in SERVER_FIELDS:
        if name in config:
            problems.append(f"sets [{name}], which only the server may set")
    unknown = sorted(set(config) - set(CONFIG_FIELDS) - set(SERVER_FIELDS))
    if unknown:
        problems.append("has field(s) Elasticsearch does not accept: " + ", ".join(unknown))
    if "model_type" not in config:
        problems.append("[model_type] must be set if [definition] is not defined (use \"pytorch\")")
    elif config["model_type"] != "pytorch":
        problems.append("model_type must be 'pytorch'")
    inference = config.get("inference_config")
    if not isinstance(inference, Mapping) or len(inference) != 1:
        problems.append("inference_config must hold exactly one task")
        return problems
    (task, options), = inference.items()
    if task not in TASK_TYPES:
        problems.append(f"inference_config has unknown task {task!r}")
    elif task != task_type:
        problems.append(f"inference_config is for {task!r} but the manifest says {task_type!r}")
    if not isinstance(options, Mapping):
        return [*problems, f"inference_config.{task} must be an object"]
    tokenization = options.get("tokenization")
    if not isinstance(tokenization, Mapping) or len(tokenization) != 1:
        problems.append(f"inference_config.{task}.tokenization must hold exactly one tokenizer kind")
    else:
        (kind, tok_options), = tokenization.items()
        if kind not in TOKENIZATIONS:
            problems.append(f"tokenization {kind!r} is not one of {', '.join(TOKENIZATIONS)}")
        elif isinstance(tok_options, Mapping) and "vocabulary" in tok_options:
            problems.append("tokenization must not carry the vocabulary (it is uploaded separately)")
        elif isinstance(tok_options, Mapping) and isinstance(tok_options.get("span"), int) and isinstance(
                tok_options.get("max_sequence_length"), int) and tok_options["span"] >= tok_options[
                "max_sequence_length"]:
            problems.append(f"[span] provided [{tok_options['span']}] must not be greater than "
                            f"[max_sequence_length] provided [{tok_options['max_sequence_length']}]")
    labels = options.get("classification_labels")
    if task == "text_classification" and (not isinstance(labels, list) or len(labels) < 2):
        problems.append("text_classification needs at least 2 classification_labels")
    field_names = (config.get("input") or {}).get("field_names") if isinstance(config.get("input"), Mapping) else None
    if not isinstance(field_names, list) or not field_names or not all(isinstance(n, str) for n in field_names):
        problems.append("input.field_names must be a non-empty list of strings")
    return problems


def tokenization_kind(config: Mapping[str, Any]) -> str | None:
    try:
        (options,) = config["inference_config"].values()
        (kind,) = options["tokenization"]
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    return str(kind)


def vocabulary_problems(vocabulary: Any, tokenization: str | None) -> list[str]:
    if not isinstance(vocabulary, Mapping):
        return ["must be a JSON object"]
    problems: list[str] = []
    unknown = sorted(set(vocabulary) - {"vocabulary", "merges", "scores"})
    if unknown:
        problems.append("has unknown field(s) " + ", ".join(unknown))
    tokens = vocabulary.get("vocabulary")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        problems.append("[vocabulary] must be a non-empty list of strings")
        tokens = []
    merges = vocabulary.get("merges")
    if merges is not None and (not isinstance(merges, list) or not all(isinstance(m, str) for m in merges)):
        problems.append("[merges] must be a list of strings")
    scores = vocabulary.get("scores")
    if scores is not None:
        if not isinstance(scores, list) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores
        ):
            problems.append("[scores] must be a list of numbers")
        elif len(scores) != len(tokens):
            problems.append("[scores] must have same length as [vocabulary]")
    if tokenization == "roberta" and not merges:
        problems.append("tokenizer type [roberta] requires [merges] to be provided and non-empty")
    if tokenization == "xlm_roberta" and not scores:
        problems.append("tokenizer type [xlm_roberta] requires [scores] to be provided and non-empty")
    return problems
