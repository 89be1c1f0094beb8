"""Helpers the benchmark scripts share: run a command, measure its wall time and peak RSS, summarise runs."""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


@dataclass(frozen=True)
class Run:
    wall: float
    peak_rss_mb: float


def measure(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Wall time and peak RSS of one child process (wait4 gives that child's own rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{err}")
    return Run(wall, usage.ru_maxrss / 1024)


def summary(runs: Sequence[Run]) -> dict[str, float]:
    walls = [r.wall for r in runs]
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "peak_rss_mb": max(r.peak_rss_mb for r in runs), "runs": len(runs)}


def warm(paths: Sequence[Path]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(8 << 20):
                pass


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(left, 16 << 20)
            handle.write(os.urandom(n))
            left -= n
