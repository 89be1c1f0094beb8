"""Trace the cluster-shaped wrapper to TorchScript, freeze it, save it, load it back; and measure the memory one
full-length request takes.

The trace runs on a padded batch of two texts of different lengths, so the padding path is recorded; nothing in
the graph depends on that length (sizes are read from the inputs at run time), which the check then proves on
other lengths and batch sizes.
"""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from loader.errors import ModelError

TRACE_TEXTS = ("Elasticsearch runs this traced model.", "Short one.")


@dataclass(frozen=True)
class TraceInfo:
    path: Path
    tracer_warnings: int  # shape-dependent Python branches the tracer saw (the check proves none matter)


def trace_and_save(module: nn.Module, example: tuple[Tensor, ...], path: Path) -> TraceInfo:
    """jit.trace, jit.freeze, jit.save. The saved archive is measured by `bundler.graph` (file version,
    operations, state hooks), the same way the loader judges it."""
    module.eval()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        # The tracer warns about every Python-level branch on a shape; the trace check (check.py) is what tells
        # whether one of them baked a constant in, so the warnings are counted, not shown.
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            traced = torch.jit.trace(module, example, check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
        except Exception as exc:  # torch raises bare RuntimeErrors for untraceable code
            raise ModelError(f"tracing failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    torch.jit.save(frozen, str(path))
    tracer_warnings = sum(1 for w in caught if issubclass(w.category, torch.jit.TracerWarning))
    return TraceInfo(path=path, tracer_warnings=tracer_warnings)


def load_saved(path: Path) -> torch.jit.ScriptModule:
    """Load the saved archive back: the check runs the bytes that go into the bundle, not the in-memory trace."""
    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return module


def allocation_bytes(module: torch.jit.ScriptModule, args: tuple[Tensor, ...]) -> int:
    """Memory allocated while answering `args` (the profiler's total), which the cluster needs per allocation
    on top of the model itself; measured the way the reference importer measures it."""
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), torch.no_grad(), \
            profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        module(*args)
    return max(0, int(prof.key_averages().total_average().cpu_memory_usage))


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines straight to file descriptor 2; keep the stage log clean."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
