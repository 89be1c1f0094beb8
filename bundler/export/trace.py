"""Trace the cluster-shaped wrapper to TorchScript, freeze it, save it, load it back; and measure the memory one
full-length request takes.

The traced and frozen modules share the wrapper's weights and let go of them as soon as the archive is written
(`_release_constants`); `torch.jit.save` writes to the file tensor by tensor, so the archive is never held in
memory beside the weights.

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
    _release_constants(frozen)
    tracer_warnings = sum(1 for w in caught if issubclass(w.category, torch.jit.TracerWarning))
    return TraceInfo(path=path, tracer_warnings=tracer_warnings)


def _release_constants(frozen: torch.jit.ScriptModule) -> None:
    """Empty the constants of a frozen module's graphs once it is saved. Freezing inlines the weights as constants
    (tensors; packed int8 Linear parameters, with their float biases, as objects) into graphs that TorchScript keeps
    in its process-wide compilation unit for the life of the process: left there, they would hold the original's
    weights (all of them: transformers maps them from one file) beside the reloaded archive's."""
    empty = torch.empty(0)
    for name in frozen._c._method_names():
        for node in frozen._c._get_method(name).graph.findAllNodes("prim::Constant"):
            kind = node.kindOf("value") if node.hasAttribute("value") else None
            if kind == "t":
                node.t_("value", empty)
            elif kind == "ival":
                node.ival_("value", None)


def load_saved(path: Path) -> torch.jit.ScriptModule:
    """Load the saved archive back: the check runs the bytes that go into the bundle, not the in-memory trace."""
    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return module


@contextmanager
def plain_execution() -> Iterator[None]:
    """Run TorchScript modules without the profiling executor's specialisation. It re-optimises the whole graph
    for every new input shape, and the check feeds a new shape nearly every call (each text alone, the batch, the
    samples): seconds of compiling for BERT-large that prove nothing. On the CPU the operations and kernels are
    the same either way (no fusion), so are the answers."""
    with torch.jit.optimized_execution(False):
        yield


@contextmanager
def measuring_allocation(into: list[int]) -> Iterator[None]:
    """Memory allocated by whatever runs inside (the profiler's total), appended to `into`: what the cluster needs
    per allocation on top of the model itself, measured the way the reference importer measures it. The check
    measures the full-length request it runs anyway, instead of running it once more."""
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield
    into.append(max(0, int(prof.key_averages().total_average().cpu_memory_usage)))


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
