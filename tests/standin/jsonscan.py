"""Where each key and value sits in a JSON request body.

Elasticsearch's parse errors start with the `[line:column]` of the offending token (Jackson's
1-based location), so strict parsing needs token positions that `json.loads` does not keep. This
module walks the text once and records them per key path; it owns nothing else.
"""

from __future__ import annotations

import contextlib
import json
from json.decoder import scanstring

_WS = " \t\r\n"
_DECODER = json.JSONDecoder()

Location = tuple[int, int]
Path = tuple[str | int, ...]


class Locations:
    """Key and value locations by path; `key(("inference_config",))` → (line, column)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self.keys: dict[Path, Location] = {}
        self.values: dict[Path, Location] = {}
        # Malformed bodies are refused by json.loads first; locations are best effort only.
        with contextlib.suppress(ValueError, IndexError):
            self._value(self._skip(0), ())

    def location(self, index: int) -> Location:
        line = self._text.count("\n", 0, index) + 1
        column = index - (self._text.rfind("\n", 0, index) + 1) + 1
        return line, column

    def key(self, path: Path) -> Location:
        return self.keys.get(path, (1, 1))

    def value(self, path: Path) -> Location:
        return self.values.get(path, (1, 1))

    def _skip(self, i: int) -> int:
        while i < len(self._text) and self._text[i] in _WS:
            i += 1
        return i

    def _value(self, i: int, path: Path) -> int:
        self.values[path] = self.location(i)
        ch = self._text[i]
        if ch == "{":
            return self._object(i + 1, path)
        if ch == "[":
            return self._array(i + 1, path)
        if ch == '"':
            return scanstring(self._text, i + 1)[1]
        return _DECODER.raw_decode(self._text, i)[1]

    def _object(self, i: int, path: Path) -> int:
        i = self._skip(i)
        if self._text[i] == "}":
            return i + 1
        while True:
            i = self._skip(i)
            key_start = i
            key, i = scanstring(self._text, i + 1)
            self.keys[(*path, key)] = self.location(key_start)
            i = self._skip(i) + 1  # the colon
            i = self._value(self._skip(i), (*path, key))
            i = self._skip(i)
            if self._text[i] == "}":
                return i + 1
            i += 1  # the comma

    def _array(self, i: int, path: Path) -> int:
        i = self._skip(i)
        if self._text[i] == "]":
            return i + 1
        index = 0
        while True:
            i = self._value(self._skip(i), (*path, index))
            i = self._skip(i)
            index += 1
            if self._text[i] == "]":
                return i + 1
            i += 1


def token_name(value: object) -> str:
    """Jackson's token name for a parsed value, as ObjectParser prints it in type errors."""
    if value is None:
        return "VALUE_NULL"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, (int, float)):
        return "VALUE_NUMBER"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, list):
        return "START_ARRAY"
    return "START_OBJECT"
