"""Canonical JSON (what gets signed) and strict JSON parsing (what gets trusted).

Canonical: sorted keys, no insignificant whitespace, UTF-8, no NaN. The same object always gives the same bytes,
which is what makes bundles reproducible and signatures stable.
Strict: duplicate keys are refused, because two parsers could pick different values for the same key.
"""
from __future__ import annotations

import json
from typing import Any


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


def strict_loads(data: bytes) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys, NaN/Infinity and invalid UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonProblem(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
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
