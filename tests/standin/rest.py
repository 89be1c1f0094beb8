"""The REST layer's vocabulary: requests, responses, routes and query-parameter parsing.

Owns how the stand-in reads URL parameters the way Elasticsearch's RestRequest does (booleans,
integers, time values, unrecognised parameters refused with a suggestion) and the route table
entries the HTTP server dispatches on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import EsError

# Parameters every Elasticsearch REST handler accepts.
GLOBAL_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path"})


@dataclass
class Request:
    method: str
    path: str
    uri: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)

    def flag(self, name: str, default: bool = False) -> bool:
        """RestRequest.paramAsBoolean: `true`, `false`, or empty for true."""
        if name not in self.params:
            return default
        value = self.params[name]
        if value in ("", "true"):
            return True
        if value == "false":
            return False
        raise errors.illegal_argument(
            f"Failed to parse value [{value}] as only [true] or [false] are allowed."
        )

    def integer(self, name: str, default: int | None = None) -> int | None:
        if name not in self.params:
            return default
        try:
            return int(self.params[name])
        except ValueError:
            raise errors.illegal_argument(
                f"Failed to parse int parameter [{name}] with value [{self.params[name]}]"
            ) from None

    def time_value(self, name: str, default_seconds: float) -> tuple[float, str]:
        """TimeValue.parseTimeValue → (seconds, the text as given)."""
        if name not in self.params:
            return default_seconds, f"{int(default_seconds)}s"
        return parse_time(self.params[name], name), self.params[name]


_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str, setting: str) -> float:
    value = text.strip().lower()
    if value in ("0", "-1"):
        return float(value)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)", value)
    if not match:
        raise EsError(
            400,
            "parse_exception",
            f"failed to parse setting [{setting}] with value [{text}] as a time value: unit is missing or "
            "unrecognized",
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Response:
    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    after: str | None = None  # "exit": exit once sent; "crash": exit without sending


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    params: frozenset[str] = frozenset()
    name: str = ""
    licensed: bool = False


def route(method: str, path: str, handler: Handler, params: tuple[str, ...] = (), name: str = "",
          licensed: bool = False) -> Route:
    """`/_ml/trained_models/{model_id}` → a route whose `{model_id}` matches one path segment."""
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"
    return Route(method, re.compile(regex), handler, frozenset(params), name, licensed)


def check_params(request: Request, allowed: frozenset[str]) -> None:
    """BaseRestHandler: unconsumed parameters are a 400 naming each, with suggestions."""
    known = allowed | GLOBAL_PARAMS
    invalid = sorted(p for p in request.params if p not in known)
    if not invalid:
        return
    described = []
    for name in invalid:
        scored = sorted(((errors.levenshtein_similarity(name, k), k) for k in known), key=lambda sk: (-sk[0], sk[1]))
        matches = [k for score, k in scored if score > 0.5]
        text = f"[{name}]"
        if len(matches) == 1:
            text += f" -> did you mean [{matches[0]}]?"
        elif matches:
            text += f" -> did you mean any of [{', '.join(matches)}]?"
        described.append(text)
    plural = "s" if len(invalid) > 1 else ""
    raise errors.illegal_argument(
        f"request [{request.path}] contains unrecognized parameter{plural}: {', '.join(described)}"
    )
