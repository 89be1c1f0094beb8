"""The answer to a `Range` header, as RFC 9110 (section 14) allows a server to give it.

One range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) is answered 206 with those bytes, clipped to the file; a range
that starts past the end (or a suffix of zero bytes) is unsatisfiable, 416. Everything else may be ignored and is:
a header that does not parse, another unit, a range whose end is before its start, several ranges (the cluster
never asks for more than one per request, and a multipart answer is a second format to get right) all get 200
with the whole file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_ONE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)
FULL, PARTIAL, UNSATISFIABLE = 200, 206, 416


@dataclass(frozen=True)
class Answer:
    status: int
    first: int = 0
    last: int = -1  # inclusive; below `first` when there is nothing to send

    @property
    def length(self) -> int:
        return max(self.last - self.first + 1, 0)

    def content_range(self, size: int) -> str | None:
        if self.status == PARTIAL:
            return f"bytes {self.first}-{self.last}/{size}"
        return f"bytes */{size}" if self.status == UNSATISFIABLE else None


def answer(header: str | None, size: int) -> Answer:
    whole = Answer(FULL, 0, size - 1)
    match = _ONE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return whole
    start, end = match.group(1), match.group(2)
    if start == "":  # the last n bytes
        suffix = int(end)
        return Answer(PARTIAL, max(size - suffix, 0), size - 1) if suffix and size else Answer(UNSATISFIABLE)
    first = int(start)
    if end != "" and int(end) < first:
        return whole  # an invalid range is ignored
    if first >= size:
        return Answer(UNSATISFIABLE)
    return Answer(PARTIAL, first, size - 1 if end == "" else min(int(end), size - 1))
