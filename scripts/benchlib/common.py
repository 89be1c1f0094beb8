"""Helpers the benchmark scripts share: run a command, measure its wall time and peak RSS, summarise runs."""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"


@dataclass(frozen=True)
class Run:
    wall: float
    peak_rss_mb: float


# Linux carries a process's peak RSS across fork and exec: a command started straight from this (large)
# process would report this process's size as its own peak. So a small interpreter starts the command,
# times it and reads its rusage, and the command's peak RSS is its own.
_TIMER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"wall": time.perf_counter() - start, "maxrss_kb": usage.ru_maxrss,
               "code": os.waitstatus_to_exitcode(status)}, out)
"""


def measure(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
            stdout: Path | None = None) -> Run:
    """Wall time and peak RSS of one command, measured by a small timer process (see _TIMER); its standard
    output kept in `stdout` if given."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result, \
            open(stdout or os.devnull, "wb") as out:
        proc = subprocess.run(["python3", "-c", _TIMER, result.name, *cmd], stdout=out,
                              stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=cwd)
        outcome = json.loads(Path(result.name).read_text() or "{}")
    if proc.returncode != 0 or outcome.get("code") != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return Run(outcome["wall"], outcome["maxrss_kb"] / 1024)


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


def settle(timeout: float = 60.0) -> None:
    """Write every dirty page back and wait until the kernel holds few (/proc/meminfo Dirty + Writeback): each
    measured command then starts on a clean disk instead of paying for the writes of the one before it (a 1 GiB
    upload leaves its parts to be written back for seconds after it ends)."""
    os.sync()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        pending_kb = sum(int(fields.get(key, "0 kB").split()[0]) for key in ("Dirty", "Writeback"))
        if pending_kb < 16 * 1024:
            return
        time.sleep(0.2)


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (/proc/loadavg)."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and every descendant it has waited for (the measured commands, the stand-in)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def eland_python() -> Path:
    """The peer's interpreter, in its own virtual environment (made on first use by scripts/eland-venv)."""
    venv = Path(subprocess.run([str(ROOT / "scripts" / "eland-venv")], check=True, capture_output=True,
                               text=True).stdout.strip().splitlines()[-1])
    return (venv if venv.is_absolute() else ROOT / venv) / "bin" / "python"
