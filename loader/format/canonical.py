"""Canonical JSON (what gets signed) and strict JSON parsing (what gets trusted).

Canonical: sorted keys, no insignificant whitespace, UTF-8, no NaN. The same object always gives the same bytes,
which is what makes bundles reproducible and signatures stable.
Strict: duplicate keys are refused, because two parsers could pick different values for the same key. Bounded:
the nesting depth and the number of values are counted on the text before anything is built, so a small hostile
document (64 MiB of `[[],[],...`) cannot cost gigabytes of objects.
"""
from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32  # a manifest nests 6 deep; a vocabulary 2
MAX_VALUES = 2_000_000  # a 250k-token vocabulary with its scores and merges has under a million
# A whole string (escapes included): strings hold no structure, so the shape is counted on the text without them.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*+"')
_BRACKETS = re.compile(r"[\[\]{}]")
_STRUCTURE = re.compile(r"[\[\]{},]")


class JsonProblem(ValueError):
    """The text is not acceptable JSON; the message says why."""


def canonical_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonProblem(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise JsonProblem(f"non-standard number {name}")


def shape_problem(text: str, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> str | None:
    """Why the document nests deeper or holds more values than allowed (the first met, reading from the start);
    None when it does not. Values are the containers and the commas. Strings are cut out in one pass, and when
    the counted values are within the limit only the brackets are walked: a manifest of a thousand files, read at
    every verify, took 35 ms token by token."""
    skeleton = _STRINGS.sub("", text)
    within = skeleton.count("[") + skeleton.count("{") + skeleton.count(",") <= max_values
    depth = values = 0
    for match in (_BRACKETS if within else _STRUCTURE).finditer(skeleton):
        char = match.group()
        if char in "[{":
            depth += 1
            values += 1
            if depth > max_depth:
                return f"nested too deeply (more than {max_depth} levels)"
        elif char in "]}":
            depth -= 1
        else:
            values += 1
        if values > max_values:
            return f"holds more than {max_values} values"
    return None


def strict_loads(data: bytes, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys, NaN/Infinity, invalid UTF-8, and documents nested deeper or
    holding more values than the limits (checked before parsing)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonProblem(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    why = shape_problem(text, max_depth, max_values)
    if why:
        raise JsonProblem(why)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except JsonProblem:
        raise
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise JsonProblem("nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise JsonProblem(f"not acceptable JSON ({exc})") from None
