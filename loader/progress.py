"""The one progress wrapper: a byte counter on stderr, quiet when stderr is not a terminal or when asked.

Results go to stdout; progress never does, so `--json` output and pipes stay clean.
"""
from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from loader import settings


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """Thread-safe; `advance` may be called from worker threads. Redraws at most 10 times a second."""

    def __init__(self, label: str, total: int, *, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty() and not settings.progress_disabled()
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_draw = 0.0

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self.enabled and (now - self._last_draw > 0.1 or self.done >= self.total):
                self._last_draw = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-6)
        rate = self.done / elapsed
        pct = 100 * self.done / self.total if self.total else 100
        eta = (self.total - self.done) / rate if rate > 0 else 0
        sys.stderr.write(f"\r{self.label}: {pct:5.1f}% {_human(self.done)}/{_human(self.total)} "
                         f"{_human(rate)}/s ETA {eta:4.0f}s ")
        sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
