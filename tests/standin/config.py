"""Strict parsing of request bodies, and of the trained model config in particular.

Owns what `PUT _ml/trained_models/<id>` accepts and refuses, in Elasticsearch's order
(PutTrainedModelAction.Request.parseRequest): TrainedModelConfig's strict parser field by field in document
order (unknown fields and value types, then each field's own parser: `input`, `prefix_strings`,
`inference_config` in task_configs.py, `model_type`), then the id in the body against the id in the URL, then
the config's constructor (TrainedModelConfig.Builder.build(), before validation when the body has no id, after
it otherwise), then `TrainedModelConfig.Builder.validate(true)` (one `action_request_validation_exception`
listing every problem). It also fills in what TransportPutTrainedModelAction adds to a stored config, so GET
returns what a real cluster returns. Tree models are answered with errors.not_emulated; packaged ids (starting with
`.`) are parsed and validated by `parse_packaged_config`, and packages.py does the rest.
`parse_json` and `check_fields` serve the other endpoints' bodies.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from . import errors, task_configs
from .jsonscan import Locations, Path, token_name
from .releases import Version, parse_version
from .xcontent import Failed, NotEnded, Source, java_list, read_field, unknown_field

INDEX_NAME = task_configs.NATIVE_INDEX
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
# Fields a release's TrainedModelConfig parser declares only from the version that serializes them on.
TOP_LEVEL_SINCE: dict[str, Version] = {"model_package": (8, 8, 0), "platform_architecture": (8, 11, 0),
                                       "prefix_strings": (8, 12, 0)}
# From 8.12 the default input comes from the inference config (InferenceConfig.getDefaultInput), so a model
# without one gets none; before, it came from the model type alone.
DEFAULT_INPUT_FROM_CONFIG: Version = (8, 12, 0)
MODEL_TYPES = ("tree_ensemble", "lang_ident", "pytorch")
TYPE_ENUM = "org.elasticsearch.xpack.core.ml.inference.TrainedModelType"
LICENSE_MODES = ("missing", "trial", "basic", "standard", "gold", "platinum", "enterprise")
_VERSION_TEXT = re.compile(r"\d+\.\d+\.\d+")


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


def _id_problems(model_id: str, packaged: bool = False) -> list[str]:
    """TrainedModelConfig.Builder.validate's id checks. A packaged id (TrainedModelConfig.isPackagedModel) checks the
    name without the dot and an optional `_SNAPSHOT` suffix (Messages.INVALID_MODEL_PACKAGE_ID, whose text was not
    found in the sources read: the stand-in uses INVALID_ID's); the length limit applies to the whole id."""
    name = model_id[1:].removesuffix("_SNAPSHOT") if packaged else model_id
    problems = []
    if not ID_PATTERN.fullmatch(name) or name == "_all":
        problems.append(
            f"Invalid model_id; '{model_id}' can contain lowercase alphanumeric (a-z and 0-9), "
            "hyphens or underscores; must start and end with alphanumeric"
        )
    if len(model_id) > ID_LENGTH_LIMIT:
        problems.append(f"Invalid model_id; '{model_id}' cannot contain more than {ID_LENGTH_LIMIT} characters.")
    return problems


def parse_model_config(model_id: str, raw: bytes, es_version: str) -> dict[str, Any]:
    """Validate a PUT body for `model_id`; return the config Elasticsearch would store."""
    read, field_names = _parse_request(model_id, raw, es_version)
    if read["model_type"] != "pytorch":
        raise errors.not_emulated(task_configs.NOT_EMULATED_TREES)
    return stored_config(model_id, read, field_names, es_version)


def parse_packaged_config(model_id: str, raw: bytes, es_version: str) -> tuple[dict[str, Any], list[str]]:
    """PutTrainedModelAction.Request for a packaged id (starting with `.`): the same parse, build and
    validate(true), whose packaged branch requires neither `model_type` nor `inference_config` and checks the id
    without its dot (and an optional `_SNAPSHOT` suffix). Returns what was read and the input field names."""
    return _parse_request(model_id, raw, es_version)


def _parse_request(model_id: str, raw: bytes, es_version: str) -> tuple[dict[str, Any], list[str]]:
    """PutTrainedModelAction.Request.parseRequest: read the body, then build and validate it (the build comes
    first when the body names no id, as the request's parser does)."""
    body, locations = parse_json(raw)
    src = Source(raw.decode("utf-8", errors="replace"), locations)
    version = parse_version(es_version)
    if not isinstance(body, dict):
        raise errors.parse_error(
            locations.value(()), f"[trained_model_config] Expected START_OBJECT but was: {token_name(body)}")
    read = _read_top_level(body, src, version)
    body_id = read.get("model_id")
    if body_id is not None and body_id != model_id:
        raise errors.illegal_argument(
            f"Inconsistent model_id; '{body_id}' specified in the body differs from '{model_id}' "
            "specified as a URL argument"
        )
    field_names = _build(read, version) if body_id is None else None
    _validate(model_id, read)
    return read, field_names if field_names is not None else _build(read, version)


def _read_top_level(body: dict[str, Any], src: Source, version: Version) -> dict[str, Any]:
    """TrainedModelConfig's strict parser, field by field in document order."""
    declared = {name: kind for name, kind in TOP_LEVEL.items() if version >= TOP_LEVEL_SINCE.get(name, (0, 0, 0))}
    read: dict[str, Any] = {}
    for name, raw in body.items():
        path = (name,)
        if name not in declared:
            message = errors.unknown_field_message("trained_model_config", name, declared)
            raise errors.parse_error(src.key(path), message)
        try:
            value = read_field("trained_model_config", name, declared[name], raw, src, path)
            handler = _FIELD_PARSERS.get(name)
            if handler is not None:
                try:
                    value = handler(value, src, version)
                except NotEnded:
                    raise
                except Failed as failure:
                    raise failure.wrap("trained_model_config", name) from None
        except Failed as failure:
            raise failure.error from None  # NotEnded too: thrown by this parser's parseSub, unwrapped
        # model_size_bytes is declared with its deprecated name estimated_heap_memory_usage_bytes.
        read["model_size_bytes" if name == "estimated_heap_memory_usage_bytes" else name] = value
    return read


def _input(value: dict[str, Any], src: Source, version: Version) -> list[str]:
    """TrainedModelInput's ConstructingObjectParser: `field_names`, required."""
    parser, names = "trained_model_config_input", None
    for name, raw in value.items():
        if name != "field_names":
            raise unknown_field(parser, name, ("field_names",), src, ("input", name))
        names = read_field(parser, name, "string_array", raw, src, ("input", name))
    if names is None:
        raise Failed(errors.illegal_argument("Required [field_names]"), src.end(("input",)))
    return names


def _prefix_strings(value: dict[str, Any], src: Source, version: Version) -> dict[str, str]:
    """TrainedModelPrefixStrings: optional `ingest` and `search` strings, shown only when set."""
    parser, read = "trained_model_config_prefix_strings", {}
    for name, raw in value.items():
        if name not in ("ingest", "search"):
            raise unknown_field(parser, name, ("ingest", "search"), src, ("prefix_strings", name))
        read[name] = read_field(parser, name, "string", raw, src, ("prefix_strings", name))
    return {name: read[name] for name in ("ingest", "search") if name in read}


def _model_type(value: str, src: Source, version: Version) -> str:
    """TrainedModelType.fromString: trimmed, upper-cased, Enum.valueOf."""
    name = value.strip().upper()
    if name.lower() not in MODEL_TYPES:
        error = errors.illegal_argument(f"No enum constant {TYPE_ENUM}.{name}")
        raise Failed(error, src.value(("model_type",)))
    return name.lower()


def _not_emulated(what: str) -> Any:
    def refuse(value: Any, src: Source, version: Version) -> Any:
        raise errors.not_emulated(what)
    return refuse


def _version(value: str, src: Source, version: Version) -> str:
    if not _VERSION_TEXT.fullmatch(value):
        raise errors.not_emulated("how MlConfigVersion parses version strings other than x.y.z")
    return value


def _create_time(value: Any, src: Source, version: Version) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.not_emulated("create_time values other than epoch milliseconds")
    return value


def _field_map(value: dict[str, Any], src: Source, version: Version) -> dict[str, Any]:
    if not all(isinstance(v, str) for v in value.values()):
        raise errors.not_emulated("default_field_map values other than strings")
    return value


_FIELD_PARSERS: dict[str, Callable[[Any, Source, Version], Any]] = {
    "input": _input,
    "prefix_strings": _prefix_strings,
    "inference_config": task_configs.parse,
    "model_type": _model_type,
    "version": _version,
    "create_time": _create_time,
    "default_field_map": _field_map,
    "definition": _not_emulated(task_configs.NOT_EMULATED_TREES),
    "compressed_definition": _not_emulated(task_configs.NOT_EMULATED_TREES),
}


def _build(read: dict[str, Any], version: Version) -> list[str]:
    """TrainedModelConfig.Builder.build(): the constructor's checks; the input field names the model gets."""
    given, config, model_type = read.get("input"), read.get("inference_config"), read.get("model_type")
    default = ["input"] if model_type == "pytorch" else None  # TrainedModelType.PYTORCH's default input
    if version >= DEFAULT_INPUT_FROM_CONFIG:
        field_names = default if given is None and config is not None else given
    else:
        field_names = default if given is None and model_type is not None else given
    if field_names is None:
        raise errors.illegal_argument("[input] must not be null.")
    for name in ("model_size_bytes", "estimated_operations"):
        if read.get(name, 0) < 0:
            raise errors.illegal_argument(f"[{name}] must be greater than or equal to 0")
    level = read.get("license_level")
    if level is not None and level.upper() not in (mode.upper() for mode in LICENSE_MODES):
        raise errors.illegal_argument(f"unrecognised license operating mode [ {level}], supported modes are "
                                      f"[{','.join(LICENSE_MODES)}]")
    return field_names


def _validate(model_id: str, read: dict[str, Any]) -> None:
    """TrainedModelConfig.Builder.validate(true), in its order (a body definition is never read this far)."""
    problems: list[str] = []
    packaged = model_id.startswith(".")
    if read.get("model_type") is None and not packaged:
        problems.append("[model_type] must be set if [definition] is not defined.")
    if read.get("inference_config") is None and not packaged:
        problems.append("[inference_config] must not be null.")
    problems += _id_problems(model_id, packaged)
    tags = read.get("tags", [])
    bad_tags = [t for t in tags if not ID_PATTERN.fullmatch(t) or t == "_all" or len(t) > ID_LENGTH_LIMIT]
    if bad_tags:
        problems.append(
            f"Invalid tags {java_list(bad_tags)}; must only can contain lowercase alphanumeric (a-z and 0-9), "
            f"hyphens or underscores, must start and end with alphanumeric, and must be less than "
            f"{ID_LENGTH_LIMIT} characters."
        )
    if model_id in tags:
        problems.append("none of the tags must equal the model_id")
    problems += _input_problems(read)
    for name in ("version", "created_by", "create_time", "license_level", "location"):
        if read.get(name) is not None:
            problems.append(f"illegal to set [{name}] at inference model creation")
    metadata = read.get("metadata") or {}
    for name in ("total_feature_importance", "model_aliases"):
        if metadata.get(name) is not None:
            problems.append(f"illegal to set [metadata.{name}] at inference model creation")
    if read.get("model_package") is not None:
        problems.append("illegal to set [model_package] at inference model creation")
    if problems:
        raise errors.validation(problems)


def _input_problems(read: dict[str, Any]) -> list[str]:
    """InferenceConfig.validateTrainedModelInput, asked only when there is an inference config."""
    field_names = read.get("input")
    if read.get("inference_config") is None or field_names is None:
        return []
    problems = []
    if not field_names:
        problems.append("[input.field_names] must not be empty")
    if any("" in name.split(".") for name in field_names if "." in name):
        problems.append("[input.field_names] must only contain valid dot delimited field names")
    return problems


def stored_config(model_id: str, read: dict[str, Any], field_names: list[str], es_version: str) -> dict[str, Any]:
    """The config as TrainedModelConfig.toXContent shows it after TransportPutTrainedModelAction filled it in."""
    config: dict[str, Any] = {"model_id": model_id, "model_type": read["model_type"]}
    if "platform_architecture" in read:
        config["platform_architecture"] = read["platform_architecture"]
    config |= {
        "created_by": "api_user",
        "version": es_version,
        "create_time": int(time.time() * 1000),
        "model_size_bytes": read.get("model_size_bytes", 0),
        "estimated_operations": read.get("estimated_operations", 0),
        "license_level": "platinum",
    }
    if "description" in read:
        config["description"] = read["description"]
    config["tags"] = read.get("tags", [])
    if "metadata" in read:
        config["metadata"] = read["metadata"]
    config["input"] = {"field_names": field_names}
    if read.get("default_field_map"):
        config["default_field_map"] = read["default_field_map"]
    config["inference_config"] = read["inference_config"]
    config["location"] = {"index": {"name": INDEX_NAME}}
    if "prefix_strings" in read:
        config["prefix_strings"] = read["prefix_strings"]
    return config


def vocabulary_document(model_id: str, model_config: dict[str, Any], vocabulary: list[str], merges: list[str],
                        scores: list[float]) -> dict[str, Any]:
    """PutTrainedModelVocabularyAction: the request's validation, then the transport's NLP and tokenizer checks;
    the document to store."""
    if not vocabulary:
        raise errors.validation(["[vocabulary] must not be empty"])
    if scores and len(scores) != len(vocabulary):
        raise errors.validation(["[scores] must have same length as [vocabulary]"])
    task_settings = next(iter(model_config.get("inference_config", {}).values()), None)
    if not isinstance(task_settings, dict) or "tokenization" not in task_settings:
        raise errors.bad_request(f"cannot put vocabulary for model [{model_id}] as it is not an NLP model")
    kind = next(iter(task_settings["tokenization"]))
    required = {"roberta": ("merges", merges), "byte_level_bpe": ("merges", merges),
                "xlm_roberta": ("scores", scores)}.get(kind)
    if required and not required[1]:
        raise errors.bad_request(
            f"cannot put vocabulary for model [{model_id}] as tokenizer type [{kind}] requires "
            f"[{required[0]}] to be provided and non-empty"
        )
    document: dict[str, Any] = {"vocabulary": vocabulary}
    if merges:
        document["merges"] = merges
    if scores:
        document["scores"] = scores
    return document
