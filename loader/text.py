"""Text from a bundle or a cluster, made safe to show: every character a terminal would act on instead of showing
(C0 and C1 controls, escape sequences, line and paragraph separators, bidirectional and other format marks,
unassigned code points) is written as its escape, so data can neither start a new line nor repaint or reorder
one. Every line the command line prints passes through `printable`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def printable_json(value: Any) -> Any:
    """Every string inside a JSON-shaped value made printable (keys too), for `--json` documents people read."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {printable(str(k)): printable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_json(v) for v in value]
    return value
