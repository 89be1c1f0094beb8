"""The trained-model config Elasticsearch gets (the body of PUT _ml/trained_models/<id>), from facts gathered
by the other stages. Pure functions: every rule here is one of tracing-conventions.md's "config fields".
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loader.errors import ModelError

REASONABLE_MAX_LENGTH = 8192  # above this, tokenizers' model_max_length is a placeholder, not a size
BERT_FALLBACK_LENGTH = 512
QA_MAX_LENGTH, QA_SPAN = 386, 128  # the SQuAD defaults the reference importer writes
ZERO_SHOT_TEMPLATE = "This example is {}."
INPUT_FIELD = "text_field"


def max_sequence_length(*, override: int | None, st_max_seq_length: int | None, tokenizer: Any, family: str,
                        task: str, position_limit: int | None = None) -> tuple[int, str]:
    """(length, where it came from). A user override first; then the length sentence-transformers truncates at;
    then the tokenizer's model_max_length when plausible; then the tokenizer's known input sizes; BERT
    tokenizers fall back to 512; otherwise refuse (max_position_embeddings is not a safe guess: some models
    offset positions). Question answering uses the SQuAD window (386) unless overridden. A length past
    what the position embeddings cover is refused: the cluster would fail on long inputs only."""
    length, origin = _max_sequence_length(override=override, st_max_seq_length=st_max_seq_length,
                                          tokenizer=tokenizer, family=family, task=task)
    if position_limit is not None and length > position_limit:
        # The cluster would pass positions the model has no embedding for: it fails on long inputs only.
        raise ModelError(f"max_sequence_length {length} ({origin}) is more than the model's position embeddings "
                         f"cover ({position_limit} tokens)",
                         hint=f"pass --max-model-input-length {position_limit} or less")
    return length, origin


def _max_sequence_length(*, override: int | None, st_max_seq_length: int | None, tokenizer: Any, family: str,
                         task: str) -> tuple[int, str]:
    if override is not None:
        return override, "--max-model-input-length"
    found: tuple[int, str] | None = None
    if st_max_seq_length:
        found = int(st_max_seq_length), "sentence-transformers max_seq_length"
    else:
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max <= REASONABLE_MAX_LENGTH:
            found = model_max, "tokenizer model_max_length"
        else:
            sizes = {v for v in (getattr(tokenizer, "max_model_input_sizes", None) or {}).values() if v}
            if len(sizes) == 1 and 0 < next(iter(sizes)) <= REASONABLE_MAX_LENGTH:
                found = int(sizes.pop()), "tokenizer max_model_input_sizes"
            elif family in ("bert", "bert_ja"):
                found = BERT_FALLBACK_LENGTH, "BERT default"
    if found is None:
        raise ModelError("cannot determine the model's maximum input length (the tokenizer's model_max_length is "
                         "missing or implausible)", hint="pass --max-model-input-length N")
    if task == "question_answering":
        return min(QA_MAX_LENGTH, found[0]), f"question answering window ({found[1]} {found[0]})"
    return found


def tokenization(family: str, options: dict[str, Any], max_length: int, task: str) -> dict[str, Any]:
    settings = dict(options, max_sequence_length=max_length)
    if task == "question_answering":
        # Elasticsearch refuses a span that is not below max_sequence_length.
        settings.update(truncate="none", span=min(QA_SPAN, max_length - 1))
    elif task == "text_similarity":
        settings["truncate"] = "second"
    return {family: settings}


def build_config(*, task: str, family: str, tokenization_options: dict[str, Any], max_length: int,
                 labels: Sequence[str], embedding_size: int | None, ingest_prefix: str | None,
                 search_prefix: str | None, description: str, per_deployment_memory_bytes: int,
                 per_allocation_memory_bytes: int) -> dict[str, Any]:
    task_config: dict[str, Any] = {"tokenization": tokenization(family, tokenization_options, max_length, task)}
    if task in ("ner", "text_classification", "zero_shot_classification"):
        task_config["classification_labels"] = list(labels)
    if task == "zero_shot_classification":
        task_config["hypothesis_template"] = ZERO_SHOT_TEMPLATE
    if task == "text_embedding":
        if not embedding_size:
            raise ModelError("the traced embedding has no dimension")
        task_config["embedding_size"] = embedding_size
    config: dict[str, Any] = {
        "description": description,
        "model_type": "pytorch",
        "inference_config": {task: task_config},
        "input": {"field_names": [INPUT_FIELD]},
        "metadata": {"per_deployment_memory_bytes": int(per_deployment_memory_bytes),
                     "per_allocation_memory_bytes": int(per_allocation_memory_bytes)},
    }
    prefixes = {k: v for k, v in (("ingest", ingest_prefix), ("search", search_prefix)) if v}
    if prefixes:
        config["prefix_strings"] = prefixes
    return config


def features_used(config: dict[str, Any]) -> set[str]:
    """Config features newer than the first ML releases (see torch_compat.FEATURE_MIN_ES)."""
    (task_config,) = config["inference_config"].values()
    used = {"prefix_strings"} if "prefix_strings" in config else set()
    if "embedding_size" in task_config:
        used.add("embedding_size")
    return used
