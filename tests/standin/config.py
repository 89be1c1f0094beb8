"""Strict parsing of request bodies, and of the trained model config in particular.

Owns what `PUT _ml/trained_models/<id>` accepts and refuses, in Elasticsearch's order: JSON and
unknown-field errors from the ObjectParser (`x_content_parse_exception` with `[line:column]`),
then the id in the body against the id in the URL, then `TrainedModelConfig.Builder.validate(true)`
(one `action_request_validation_exception` listing every problem). It also fills in the defaults
Elasticsearch adds to a stored config, so GET returns what a real cluster returns.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import errors
from .errors import EsError
from .jsonscan import Locations, Path, token_name

INDEX_NAME = ".ml-inference-native-000002"
ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9_\-\.]*[a-z0-9])?")
ID_LENGTH_LIMIT = 64

# ObjectParser value kinds: which JSON values each declared field accepts.
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "long": (int, str),
    "int": (int, str),
    "bool": (bool, str),
    "string_array": (list, str),
    "double_array": (list, int, float),
    "object": (dict,),
    "array": (list,),
    "value": (str, int, float, bool),
}

TOP_LEVEL: dict[str, str] = {
    "model_id": "string", "model_type": "string", "created_by": "string", "version": "string",
    "description": "string", "create_time": "value", "tags": "string_array", "metadata": "object",
    "doc_type": "string", "input": "object", "model_size_bytes": "long",
    "estimated_heap_memory_usage_bytes": "long", "estimated_operations": "long", "definition": "object",
    "compressed_definition": "string", "license_level": "string", "default_field_map": "object",
    "inference_config": "object", "location": "object", "model_package": "object",
    "platform_architecture": "string", "prefix_strings": "object",
}

TOKENIZATION_FIELDS: dict[str, dict[str, str]] = {
    kind: {"with_special_tokens": "bool", "max_sequence_length": "int", "truncate": "string", "span": "int"}
    | extra
    for kind, extra in {
        "bert": {"do_lower_case": "bool"},
        "bert_ja": {"do_lower_case": "bool"},
        "mpnet": {"do_lower_case": "bool"},
        "roberta": {"add_prefix_space": "bool"},
        "xlm_roberta": {},
        "deberta_v2": {"do_lower_case": "bool"},
    }.items()
}

_COMMON_TASK = {"vocabulary": "object", "tokenization": "object", "results_field": "string"}
TASK_FIELDS: dict[str, dict[str, str]] = {
    "fill_mask": _COMMON_TASK | {"num_top_classes": "int", "mask_token": "string"},
    "ner": _COMMON_TASK | {"classification_labels": "string_array"},
    "pass_through": dict(_COMMON_TASK),
    "question_answering": _COMMON_TASK | {"num_top_classes": "int", "max_answer_length": "int", "question": "string"},
    "text_classification": _COMMON_TASK | {"classification_labels": "string_array", "num_top_classes": "int"},
    "text_embedding": _COMMON_TASK | {"embedding_size": "int"},
    "text_expansion": dict(_COMMON_TASK),
    "text_similarity": _COMMON_TASK | {"text": "string", "span_score_combination_function": "string"},
    "zero_shot_classification": _COMMON_TASK
    | {"classification_labels": "string_array", "hypothesis_template": "string", "multi_label": "bool",
       "labels": "string_array"},
}

MASK_TOKENS = {"bert": "[MASK]", "bert_ja": "[MASK]", "mpnet": "<mask>", "roberta": "<mask>",
               "xlm_roberta": "<mask>", "deberta_v2": "[MASK]"}


def parse_json(raw: bytes) -> tuple[Any, Locations]:
    """The body as JSON plus token locations; Elasticsearch's errors for empty or broken bodies."""
    if not raw.strip():
        raise errors.body_required()
    text = raw.decode("utf-8", errors="replace")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.parse_error((exc.lineno, exc.colno), f"Failed to parse object: {exc.msg}") from exc
    return value, Locations(text)


def check_fields(
    parser: str, body: Any, fields: dict[str, str], locations: Locations, path: Path = ()
) -> None:
    """ObjectParser's strictness: an object, known fields only, each of an accepted value type."""
    if not isinstance(body, dict):
        raise errors.parse_error(
            locations.value(path), f"[{parser}] Expected START_OBJECT but was: {token_name(body)}"
        )
    for name, value in body.items():
        kind = fields.get(name)
        if kind is None:
            message = errors.unknown_field_message(parser, name, fields)
            raise errors.parse_error(locations.key((*path, name)), message)
        if not isinstance(value, _ACCEPTS[kind]) or (kind in ("long", "int") and isinstance(value, bool)):
            raise errors.parse_error(
                locations.value((*path, name)),
                f"[{parser}] {name} doesn't support values of type: {token_name(value)}",
            )
        if kind == "string_array" and isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise errors.parse_error(locations.value((*path, name)), f"[{parser}] failed to parse field [{name}]")


def _named_object(parent: str, field: str, value: dict[str, Any], known: dict[str, Any],
                  locations: Locations, path: Path) -> str:
    """declareNamedObject: exactly one entry whose name is registered."""
    if len(value) != 1:
        cause = errors.parse_error(locations.value(path), f"[{field}] can only have one entry but has {len(value)}")
        raise errors.parse_error(locations.value(path), f"[{parent}] failed to parse field [{field}]", cause)
    (name,) = value
    if name not in known:
        cause = EsError(400, "named_object_not_found_exception",
                        "[{}:{}] unknown field [{}]".format(*locations.key((*path, name)), name))
        raise errors.parse_error(locations.value(path), f"[{parent}] failed to parse field [{field}]", cause)
    return name


def parse_inference_config(value: dict[str, Any], locations: Locations) -> dict[str, Any]:
    """The task config with Elasticsearch's defaults filled in, or the wrapped parse error."""
    path: Path = ("inference_config",)
    outer = "[trained_model_config] failed to parse field [inference_config]"
    task = _named_object("trained_model_config", "inference_config", value, TASK_FIELDS, locations, path)
    settings = value[task]
    task_path = (*path, task)
    try:
        check_fields(task, settings, TASK_FIELDS[task], locations, task_path)
        if "vocabulary" in settings:
            raise errors.bad_request("illegal setting [vocabulary] on inference model creation")
        tokenization = settings.get("tokenization", {"bert": {}})
        if not isinstance(tokenization, dict):
            raise errors.parse_error(locations.value((*task_path, "tokenization")),
                                     f"[{task}] tokenization doesn't support values of type: "
                                     f"{token_name(tokenization)}")
        kind = _named_object(task, "tokenization", tokenization, TOKENIZATION_FIELDS, locations,
                             (*task_path, "tokenization"))
        options = tokenization[kind]
        check_fields(kind, options, TOKENIZATION_FIELDS[kind], locations, (*task_path, "tokenization", kind))
        truncate = options.get("truncate", "first")
        if truncate not in ("first", "second", "none"):
            raise errors.illegal_argument(f"unknown truncate value [{truncate}]")
        labels = settings.get("classification_labels")
        if task == "text_classification" and (labels is None or len(labels) < 2):
            raise errors.bad_request(f"[text_classification] requires at least 2 [classification_labels]; "
                                     f"provided {_java_list(labels)}")
    except EsError as exc:
        raise errors.parse_error(locations.value(path), outer, exc) from exc
    defaults: dict[str, Any] = {"with_special_tokens": True, "max_sequence_length": 512,
                                "truncate": "first", "span": -1}
    if "do_lower_case" in TOKENIZATION_FIELDS[kind]:
        defaults = {"do_lower_case": False, **defaults}
    if kind == "roberta":
        defaults = {"add_prefix_space": False, **defaults}
    stored: dict[str, Any] = {"vocabulary": {"index": INDEX_NAME},
                              "tokenization": {kind: defaults | options}}
    stored |= {k: v for k, v in settings.items() if k != "tokenization"}
    stored.setdefault("results_field", "predicted_value")
    if task == "text_classification":
        stored.setdefault("num_top_classes", 0)
    if task == "fill_mask":
        stored.setdefault("num_top_classes", 5)
        stored.setdefault("mask_token", MASK_TOKENS[kind])
    return {task: stored}


def _java_list(values: list[str] | None) -> str:
    return "null" if values is None else "[" + ", ".join(values) + "]"


def _id_problems(model_id: str) -> list[str]:
    problems = []
    if not ID_PATTERN.fullmatch(model_id) or model_id == "_all":
        problems.append(
            f"Invalid model_id; '{model_id}' can contain lowercase alphanumeric (a-z and 0-9), "
            "hyphens or underscores; must start and end with alphanumeric"
        )
    if len(model_id) > ID_LENGTH_LIMIT:
        problems.append(f"Invalid model_id; '{model_id}' cannot contain more than {ID_LENGTH_LIMIT} characters.")
    return problems


def parse_model_config(model_id: str, raw: bytes, es_version: str) -> dict[str, Any]:
    """Validate a PUT body for `model_id`; return the config Elasticsearch would store."""
    body, locations = parse_json(raw)
    check_fields("trained_model_config", body, TOP_LEVEL, locations)
    for name in ("input", "prefix_strings"):
        if name in body:
            fields = {"field_names": "string_array"} if name == "input" else {"ingest": "string", "search": "string"}
            try:
                check_fields(f"trained_model_config_{name}", body[name], fields, locations, (name,))
                if name == "input" and "field_names" not in body[name]:
                    raise errors.illegal_argument("Required [field_names]")
            except EsError as exc:
                raise errors.parse_error(locations.value((name,)),
                                         f"[trained_model_config] failed to parse field [{name}]", exc) from exc
    inference_config = None
    if isinstance(body.get("inference_config"), dict):
        inference_config = parse_inference_config(body["inference_config"], locations)
    if "definition" in body or "compressed_definition" in body:
        # Stand-in limitation (not an Elasticsearch text): PyTorch definitions arrive as parts.
        raise errors.bad_request("the stand-in accepts PyTorch definitions only as definition parts")
    body_id = body.get("model_id")
    if body_id is not None and body_id != model_id:
        raise errors.illegal_argument(
            f"Inconsistent model_id; '{body_id}' specified in the body differs from '{model_id}' "
            "specified as a URL argument"
        )

    # TrainedModelConfig.Builder.validate(true), in its order.
    problems: list[str] = []
    if body.get("model_type") is None:
        problems.append("[model_type] must be set if [definition] is not defined.")
    if inference_config is None:
        problems.append("[inference_config] must not be null.")
    problems += _id_problems(model_id)
    tags = body.get("tags", [])
    bad_tags = [t for t in tags if not ID_PATTERN.fullmatch(t) or t == "_all" or len(t) > ID_LENGTH_LIMIT]
    if bad_tags:
        problems.append(
            f"Invalid tags {_java_list(bad_tags)}; must only can contain lowercase alphanumeric (a-z and 0-9), "
            f"hyphens or underscores, must start and end with alphanumeric, and must be less than "
            f"{ID_LENGTH_LIMIT} characters."
        )
    if model_id in tags:
        problems.append("none of the tags must equal the model_id")
    field_names = body.get("input", {}).get("field_names")
    if field_names is not None and not field_names:
        problems.append("[input.field_names] must not be empty")
    for name in ("version", "created_by", "create_time", "license_level", "location"):
        if body.get(name) is not None:
            problems.append(f"illegal to set [{name}] at inference model creation")
    metadata = body.get("metadata") or {}
    for name in ("total_feature_importance", "model_aliases"):
        if metadata.get(name) is not None:
            problems.append(f"illegal to set [metadata.{name}] at inference model creation")
    if body.get("model_package") is not None:
        problems.append("illegal to set [model_package] at inference model creation")
    if problems:
        raise errors.validation(problems)
    return _stored_config(model_id, body, inference_config or {}, es_version)


def _stored_config(model_id: str, body: dict[str, Any], inference_config: dict[str, Any],
                   es_version: str) -> dict[str, Any]:
    import time

    size = body.get("model_size_bytes", body.get("estimated_heap_memory_usage_bytes", 0))
    config: dict[str, Any] = {
        "model_id": model_id,
        "model_type": body["model_type"],
        "created_by": "api_user",
        "version": es_version,
        "create_time": int(time.time() * 1000),
        "model_size_bytes": int(size),
        "estimated_operations": int(body.get("estimated_operations", 0)),
        "license_level": "platinum",
    }
    for name in ("description", "tags", "metadata"):
        if name in body:
            config[name] = body[name]
    config.setdefault("tags", [])
    config["input"] = body.get("input", {"field_names": ["text_field"]})
    config["inference_config"] = inference_config
    config["location"] = {"index": {"name": INDEX_NAME}}
    for name in ("platform_architecture", "prefix_strings"):
        if name in body:
            config[name] = body[name]
    return config
