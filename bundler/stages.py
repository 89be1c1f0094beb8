"""Stage progress for export and pack: one line on stderr when a stage starts and one when it ends, with its time.

Exports take seconds to minutes and run mostly inside torch, so a byte counter (loader.progress) does not fit;
plain lines do, and they stay readable in CI logs. Never stdout: that is for the result and `--json`.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

STAGES = ("resolve", "load", "trace", "check", "write")


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float


class StageLog:
    """Collects the time of each stage and echoes progress lines (to stderr unless told otherwise)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.times: list[StageTime] = []
        self.warnings: list[str] = []

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        """Warnings are kept for the `--json` summary as well as shown."""
        self.warnings.append(text)
        self.say(f"warning: {text}")

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        number = STAGES.index(name) + 1 if name in STAGES else 0
        tag = f"[{number}/{len(STAGES)}] {name}" if number else name
        self.say(f"{tag}: {detail}..." if detail else f"{tag}...")
        start = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - start
            self.times.append(StageTime(name, seconds))
        self.say(f"{tag}: done in {seconds:.1f}s")
