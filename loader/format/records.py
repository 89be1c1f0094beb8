"""The typed shape of the manifest's free-form records that the loader reads: `compatibility` (preflight,
inspect), `samples` (the smoke test) and `provenance.source` (inspect).

They are signed, but signed by a publisher whose tool may be newer, older or wrong: a record of the wrong type is a
layout refusal when the manifest is parsed, never a crash later in `inspect` or `load`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

FieldCheck = Callable[[Any], bool]


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _optional_string(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(_number(v) for v in value)


GRAPH: dict[str, FieldCheck] = {
    "file_version": lambda v: v is None or _count(v), "operations": _strings,
    "forward_top_level_operations": _strings, "state_hooks": _flag, "node_count": _count,
}
COMPATIBILITY: dict[str, FieldCheck] = {
    "min_es_version": _string, "required_libtorch": _string, "traced_with_torch": _string,
    "target_es_version": _optional_string, "target_libtorch": _optional_string, "allow_newer_torch": _flag,
    "allow_unsupported_ops": _flag, "predicted_refusal": _string, "deploys_on": _strings,
    "allow_accent_difference": _flag,
    "graph": lambda v: isinstance(v, dict) and not fields_problem(v, GRAPH),
}
SOURCE: dict[str, FieldCheck] = {
    "kind": _string, "hub_model_id": _optional_string, "revision": _optional_string,
    "commit_sha": _optional_string, "directory": _optional_string, "definition": _optional_string,
    "url": _optional_string,
}
SAMPLE_INPUT: dict[str, FieldCheck] = {"text": _string, "text_pair": _string, "labels": _strings}
# What the smoke test compares; other expected fields are informative and free.
SAMPLE_EXPECTED: dict[str, FieldCheck] = {
    "dimensions": _count, "prefix": _numbers, "norm": _number, "atol": _number,
    "predicted_value": lambda v: _string(v) or _number(v), "prediction_probability": _number,
    "top_classes": lambda v: isinstance(v, list) and all(isinstance(c, dict) for c in v),
    "entities": lambda v: isinstance(v, list) and all(_entity(e) for e in v),
    "start_offset": _count, "end_offset": _count, "output_prefix": _numbers,
    "expansion": lambda v: isinstance(v, dict) and all(_string(k) and _number(w) for k, w in v.items()),
}


def _entity(value: Any) -> bool:
    return isinstance(value, dict) and not fields_problem(value, ENTITY)


ENTITY: dict[str, FieldCheck] = {"entity": _string, "class_name": _string, "class_probability": _number,
                                 "start_pos": _count, "end_pos": _count}


def fields_problem(record: Mapping[str, Any], spec: Mapping[str, FieldCheck], *, closed: bool = True) -> str | None:
    """Why `record` does not fit `spec` (unknown fields refused when `closed`); None when it fits."""
    if closed:
        unknown = sorted(set(record) - set(spec))
        if unknown:
            return "has unknown field(s) " + ", ".join(unknown)
    wrong = sorted(name for name, check in spec.items() if name in record and not check(record[name]))
    return f"has wrongly typed field(s) {', '.join(wrong)}" if wrong else None


def sample_problem(sample: Any) -> str | None:
    if not isinstance(sample, dict) or set(sample) - {"input", "expected"}:
        return "must be an object with input and expected"
    given, expected = sample.get("input"), sample.get("expected", {})
    if not isinstance(given, dict) or not isinstance(given.get("text"), str):
        return "input must be an object with a text"
    if not isinstance(expected, dict):
        return "expected must be an object"
    return fields_problem(given, SAMPLE_INPUT) or fields_problem(expected, SAMPLE_EXPECTED, closed=False)
