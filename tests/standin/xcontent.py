"""Elasticsearch's XContent parse failures, as its ObjectParser and ConstructingObjectParser raise and wrap them.

Owns what the strict config parsers share:

- `Source`: where each key, value and closing brace of the request body sits (Jackson's 1-based `[line:column]`).
- `Failed`: a failure on its way out through nested parsers. Every wrapper (`[parser] failed to parse field [f]`)
  is located at the token the JSON parser stood on when the failure was thrown (ObjectParser.parseValue,
  declareNamedObject's rethrowFieldParseFailure), so a failure carries that token with it.
- `ParseFailure`: the body of a wrapped failure. Its root_cause is the one ElasticsearchException.guessRootCauses
  picks: it unwraps XContentParseException into a parse-exception or ElasticsearchException cause, and an
  ElasticsearchException into an ElasticsearchException cause.
- `read_field`: the value kinds ObjectParser declares (ValueType): which JSON tokens each accepts, and how
  XContentParser coerces strings into numbers and booleans.
"""

from __future__ import annotations

import decimal
import json
import re
from typing import Any

from . import errors
from .errors import EsError
from .jsonscan import Locations, Path, token_name

Location = tuple[int, int]

XCONTENT = "x_content_parse_exception"
_PARSE_TYPES = frozenset({XCONTENT, "named_object_not_found_exception"})
# Java exceptions that are not ElasticsearchExceptions (everything else the stand-in raises is one).
_PLAIN_JAVA = _PARSE_TYPES | {"illegal_argument_exception", "illegal_state_exception", "number_format_exception",
                              "action_request_validation_exception"}
NOT_EMULATED = 501  # errors.not_emulated: passes through every wrapper untouched
_DECODER = json.JSONDecoder()
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
# Double.parseDouble's decimal forms (after trimming), with its optional f/d suffix.
_JAVA_DOUBLE = re.compile(r"[+-]?(?:NaN|Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fFdD]?)")


class Source:
    """The request body's text and the locations of its tokens, by key path."""

    def __init__(self, text: str, locations: Locations) -> None:
        self.text = text
        self.locations = locations
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def key(self, path: Path) -> Location:
        return self.locations.key(path)

    def value(self, path: Path) -> Location:
        return self.locations.value(path)

    def end(self, path: Path) -> Location:
        """The closing `}` or `]` of the object or array at `path` (where a parser stands once it has read it)."""
        line, column = self.value(path)
        start = self._line_starts[line - 1] + column - 1
        try:
            _, stop = _DECODER.raw_decode(self.text, start)
        except ValueError:
            return line, column
        return self.locations.location(stop - 1)


def root_cause(error: EsError) -> EsError:
    """ElasticsearchException.guessRootCauses for a chain of stand-in errors."""
    cause = error.caused_by
    if cause is None:
        return error
    if error.type not in _PLAIN_JAVA:
        return root_cause(cause) if cause.type not in _PLAIN_JAVA else error
    if error.type in _PARSE_TYPES and (cause.type in _PARSE_TYPES or cause.type not in _PLAIN_JAVA):
        return root_cause(cause)
    return error


class ParseFailure(EsError):
    """An error whose root_cause follows guessRootCauses through its cause chain."""

    def body(self) -> dict[str, Any]:
        root = root_cause(self)
        first = {"type": root.type, "reason": root.reason, **root.extra}
        return {"error": {"root_cause": [first], **self._cause()}, "status": self.status}


def parse_exception(at: Location | None, message: str, cause: EsError | None = None,
                    type_: str = XCONTENT) -> ParseFailure:
    """XContentParseException: `[line:column] message`, or the bare message when it has no location."""
    prefix = f"[{at[0]}:{at[1]}] " if at is not None else ""
    return ParseFailure(400, type_, prefix + message, caused_by=cause)


class Failed(Exception):
    """A failure leaving nested parsers: the error so far and the token the JSON parser stands on."""

    def __init__(self, error: EsError, at: Location) -> None:
        super().__init__(error.reason)
        self.error = error
        self.at = at

    def wrap(self, parser: str, field: str) -> Failed:
        """One more `[parser] failed to parse field [field]`, located where the parser stands."""
        return Failed(parse_exception(self.at, f"[{parser}] failed to parse field [{field}]", self.error), self.at)


# ObjectParser.ValueType: the JSON values each declared kind accepts.
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int, float, str),
    "long": (int, float, str),
    "bool": (bool, str),
    "string_array": (list, str),
    "object": (dict,),
    "value": (str, int, float, bool, type(None)),
}


def accepts(kind: str, value: Any) -> bool:
    if kind in ("int", "long") and isinstance(value, bool):
        return False
    return isinstance(value, _ACCEPTS[kind])


def read_field(parser: str, name: str, kind: str, value: Any, src: Source, path: Path) -> Any:
    """A declared field's value as the parser reads it, or Failed as ObjectParser reports it."""
    at = src.value(path)
    if not accepts(kind, value):
        raise Failed(parse_exception(at, f"[{parser}] {name} doesn't support values of type: {token_name(value)}"),
                     at)
    try:
        return _coerce(kind, value)
    except EsError as cause:
        if cause.status == NOT_EMULATED:
            raise
        raise Failed(cause, at).wrap(parser, name) from None


def _coerce(kind: str, value: Any) -> Any:
    if kind in ("int", "long"):
        return _int_value(value, kind)
    if kind == "bool" and isinstance(value, str):
        # Booleans.parseBoolean: an empty value is the default (false), anything but true/false is refused.
        if value in ("", "false", "true"):
            return value == "true"
        raise errors.illegal_argument(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")
    if kind == "string_array":
        return [_text(item) for item in value] if isinstance(value, list) else [value]
    return value


def _long_text(text: str) -> int:
    """Numbers.toLong: Long.parseLong, else a BigDecimal truncated toward zero."""
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        number = decimal.Decimal("NaN")
    if not number.is_finite() or text.strip() != text or "_" in text:
        raise errors.illegal_argument(f"Cannot convert [{text}] to a number")
    if not _LONG_MIN <= int(number) <= _LONG_MAX:
        raise errors.illegal_argument(f"Value [{text}] is out of range for a long")
    return int(number)


def _int_value(value: Any, kind: str) -> int:
    """XContentParser.intValue/longValue with coercion: numbers truncate, strings parse as Java numbers."""
    if isinstance(value, str) and kind == "long":
        return _long_text(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise EsError(400, "number_format_exception", "empty String")
        if not _JAVA_DOUBLE.fullmatch(text):
            raise EsError(400, "number_format_exception", f'For input string: "{text}"')
        number = float(text.rstrip("fFdD").replace("Infinity", "inf"))
        if number != number:  # NaN: Java's range checks are false and (int) NaN is 0
            return 0
        if kind == "int" and not _INT_MIN <= number <= _INT_MAX:
            raise errors.illegal_argument(f"Value [{value}] is out of range for an integer")
        value = number
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise errors.not_emulated("non-finite numbers in integer fields")
        value = int(value)
    if not (_INT_MIN <= value <= _INT_MAX if kind == "int" else _LONG_MIN <= value <= _LONG_MAX):
        raise errors.not_emulated("JSON integers outside the range of the field's Java type")
    return int(value)


def _text(item: Any) -> str:
    """XContentParser.text() of an array item: strings as they are, numbers and booleans as written."""
    if isinstance(item, str):
        return item
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return json.dumps(item)
    raise errors.not_emulated("null, object or array items in string arrays")


NAMED_OBJECT_NOT_FOUND = "named_object_not_found_exception"


class NotEnded(Failed):
    """ObjectParser.parseSub's check after a named object: thrown outside the declaring parser's field wrapper."""


def parse_named(field: str, value: dict[str, Any], registered: Any, src: Source, path: Path,
                parse_entry: Any) -> tuple[str, Any]:
    """declareNamedObject: the first entry's name picks the registered parser that reads its value.

    An empty object asks the registry for the name the JSON parser reports at its `}` (the enclosing field's);
    a second entry is noticed only after the first was read, by the declaring parser.
    """
    if not value:
        at = src.end(path)
        error = parse_exception(at, f"unknown field [{field}]", type_=NAMED_OBJECT_NOT_FOUND)
        raise Failed(error, at).wrap(field, field)
    name, entry = next(iter(value.items()))
    entry_path = (*path, name)
    if name not in registered:
        at = src.key(entry_path)
        raise Failed(parse_exception(at, f"unknown field [{name}]", type_=NAMED_OBJECT_NOT_FOUND), at).wrap(field, name)
    try:
        result = parse_entry(name, entry, entry_path)
    except Failed as failure:
        raise Failed(failure.error, failure.at).wrap(field, name) from None
    if len(value) > 1:
        second = list(value)[1]
        ended = EsError(500, "illegal_state_exception", f"parser for [{field}] did not end on END_OBJECT")
        raise NotEnded(ended, src.key((*path, second)))
    return name, result


def expect_object(parser: str, value: Any, src: Source, path: Path) -> None:
    """ObjectParser.parse on a value that must be an object."""
    if not isinstance(value, dict):
        at = src.value(path)
        raise Failed(parse_exception(at, f"[{parser}] Expected START_OBJECT but was: {token_name(value)}"), at)


def unknown_field(parser: str, name: str, candidates: Any, src: Source, path: Path) -> Failed:
    """The strict parser's refusal of an undeclared field, located at its name; the parser stands on its value."""
    message = errors.unknown_field_message(parser, name, candidates)
    return Failed(parse_exception(src.key(path), message), src.value(path))


def failed_to_build(parser: str, cause: EsError, at: Location) -> Failed:
    """ConstructingObjectParser.buildTarget: the constructor's refusal, wrapped without a location."""
    if cause.status == NOT_EMULATED:
        raise cause
    return Failed(parse_exception(None, f"Failed to build [{parser}] after last required field arrived", cause), at)


def java_list(values: list[str] | None) -> str:
    """List.toString (and `null`), as Elasticsearch formats lists into messages."""
    return "null" if values is None else "[" + ", ".join(values) + "]"
