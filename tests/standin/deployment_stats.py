"""What one node reports about a started deployment: inference counters and the inference cache.

Owns the per-deployment node counters Elasticsearch's `_stats` shows (AssignmentStats.NodeStats):
`inference_count` (every document answered, cache hits included), `inference_cache_hit_count`, the
average times with and without cache hits, `last_access`, the last-minute throughput and its peak,
`number_of_pending_requests`; and the native process's inference cache, emulated: on when the
deployment's `cache_size` is above 0 bytes (the default is the model's size, `cache_size: 0` turns it
off), keyed by the tokenized input (an identical input is a hit, answered without running the module),
least recently used entries dropped beyond `cache_size`, emptied by the cache-clear API without resetting
the counters. Counters live with the process: a restarted stand-in starts them from zero.
"""

from __future__ import annotations

import decimal
import re
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from . import config, errors
from .cluster import ClusterInfo
from .models import Model

if TYPE_CHECKING:
    from .deployments import Deployment

_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4, "pb": 1024**5}
_SUFFIX = re.compile(r"(.*?)(kb|mb|gb|tb|pb|k|m|g|t|p|b)")


def parse_byte_size(text: str, setting: str) -> tuple[int, str]:
    """ByteSizeValue.parseBytesSizeValue → (bytes, getStringRep(), the string TaskParams echoes back).

    `0` and `-1` need no unit; `k`/`kb` ... `p`/`pb` (any case) keep their unit in the echo when the size is a whole
    number of it (`10k` → `10kb`), else the echo is in bytes; up to two decimals are accepted and rounded up.
    """
    if text in ("0", "0b", "0B", "-1", "-1b", "-1B"):
        return int(text.rstrip("bB")), text.rstrip("bB")
    lower = text.lower().strip()
    match = _SUFFIX.fullmatch(lower)
    if not match:
        raise errors.EsError(
            400, "parse_exception",
            f"failed to parse setting [{setting}] with value [{text}] as a size in bytes: unit is missing or "
            "unrecognized")
    number, unit = match.group(1).strip(), match.group(2)
    unit = unit if unit.endswith("b") else unit + "b"
    failed = f"failed to parse setting [{setting}] with value [{text}]"
    try:
        amount = decimal.Decimal(number) if unit != "b" else decimal.Decimal(int(number))
    except (ValueError, ArithmeticError):
        raise errors.EsError(400, "parse_exception", failed) from None
    if not amount.is_finite():
        raise errors.EsError(400, "parse_exception", failed)
    if amount < 0:
        raise errors.EsError(400, "parse_exception", f"{failed} as a size in bytes")
    if -int(amount.as_tuple().exponent) > 2:
        raise errors.EsError(400, "parse_exception",
                             f"failed to parse setting [{setting}] with more than two decimals in value [{text}]")
    size = int((amount * _UNITS[unit]).to_integral_value(rounding=decimal.ROUND_UP))
    if size <= 0:
        return size, str(size)
    whole, residue = divmod(size, _UNITS[unit])
    return size, (f"{whole}{unit}" if residue == 0 else f"{size}b")


def byte_size_text(size: int) -> str:
    """ByteSizeValue.ofBytes(size).getStringRep(): `1630b`, and `0` for nothing."""
    return f"{size}b" if size > 0 else str(size)


def byte_size_human(size: int) -> str:
    """ByteSizeValue.toString() (what its toXContent writes): the largest unit reached, one decimal kept and cut,
    a `.0` dropped (Strings.format1Decimals): `1630` → `1.5kb`, `10240` → `10kb`, `0` → `0b`."""
    value, suffix = float(size), "b"
    for unit in ("pb", "tb", "gb", "mb", "kb"):
        if size >= _UNITS[unit]:
            value, suffix = size / _UNITS[unit], unit
            break
    text = repr(value)
    point = text.index(".")
    fraction = text[point + 1]
    return text[:point] + suffix if fraction == "0" else text[:point + 2] + suffix


class InferenceCache:
    """An LRU map from tokenized input to the module's output, bounded in bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._used = 0

    def get(self, key: tuple[Any, ...]) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: tuple[Any, ...], output: Any, size: int) -> None:
        if size > self.capacity:
            return
        self._entries[key] = (output, size)
        self._used += size
        while self._used > self.capacity:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._used -= dropped

    def clear(self) -> None:
        self._entries.clear()
        self._used = 0


class NodeCounters:
    """The node's view of one deployment: counters, timings and the cache."""

    def __init__(self, cache_bytes: int) -> None:
        self._lock = threading.Lock()
        self.cache = InferenceCache(cache_bytes) if cache_bytes > 0 else None
        self.inference_count = 0
        self.cache_hits = 0
        self.total_ms = 0.0
        self.miss_ms = 0.0
        self.last_access: int | None = None
        self.peak_per_minute = 0
        self._recent: deque[tuple[float, bool, float]] = deque()  # (monotonic time, cache hit, ms)

    def wrap(self, module: Any) -> Any:
        """A callable that answers from the cache when it can and counts every call as one inference."""
        return _CountingModule(self, module)

    def clear_cache(self) -> None:
        with self._lock:
            if self.cache is not None:
                self.cache.clear()

    def record(self, hit: bool, elapsed_ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.inference_count += 1
            self.cache_hits += hit
            self.total_ms += elapsed_ms
            self.miss_ms += 0.0 if hit else elapsed_ms
            self.last_access = int(time.time() * 1000)
            self._recent.append((now, hit, elapsed_ms))
            self._forget(now)
            self.peak_per_minute = max(self.peak_per_minute, len(self._recent))

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > 60.0:
            self._recent.popleft()

    def node_fields(self, start_time: int, threads: int, allocations: int) -> dict[str, Any]:
        """AssignmentStats.NodeStats' fields after `node` and `routing_state`, for a started route, in order."""
        with self._lock:
            self._forget(time.monotonic())
            recent = list(self._recent)
            count, hits, peak = self.inference_count, self.cache_hits, self.peak_per_minute
            fields: dict[str, Any] = {"inference_count": count}
            if count > 0:
                misses = count - hits
                fields["average_inference_time_ms"] = self.total_ms / count
                fields["average_inference_time_ms_excluding_cache_hits"] = self.miss_ms / misses if misses else 0.0
            fields["inference_cache_hit_count"] = hits
            if self.last_access is not None:
                fields["last_access"] = self.last_access
        return {**fields, "number_of_pending_requests": 0, "start_time": start_time,
                "threads_per_allocation": threads, "number_of_allocations": allocations,
                "peak_throughput_per_minute": peak, "throughput_last_minute": len(recent),
                "average_inference_time_ms_last_minute": sum(r[2] for r in recent) / len(recent) if recent else 0.0,
                "inference_cache_hit_count_last_minute": sum(1 for r in recent if r[1])}


class _CountingModule:
    def __init__(self, counters: NodeCounters, module: Any) -> None:
        self.counters = counters
        self.module = module

    def __call__(self, *inputs: Any) -> Any:
        started = time.perf_counter()
        cache = self.counters.cache
        key = tuple(tuple(t.flatten().tolist()) for t in inputs) if cache is not None else ()
        with self.counters._lock:
            output = cache.get(key) if cache is not None else None
        hit = output is not None
        if not hit:
            output = self.module(*inputs)
            if cache is not None:
                size = sum(t.nelement() * t.element_size() for t in inputs) + _size(output)
                with self.counters._lock:
                    cache.put(key, output, size)
        self.counters.record(hit, (time.perf_counter() - started) * 1000.0)
        return output


def _size(output: Any) -> int:
    if isinstance(output, (tuple, list)):
        return sum(_size(o) for o in output)
    if hasattr(output, "element_size"):
        return int(output.nelement() * output.element_size())
    return 64


# --- adaptive allocations (AdaptiveAllocationsSettings) ----------------------------------------------

def parse_adaptive(value: Any, locations: Any, parent: str) -> dict[str, Any]:
    """The `adaptive_allocations` object; a null bound is the reset marker -1, as declareIntOrNull reads it."""
    path = ("adaptive_allocations",)
    try:
        if isinstance(value, dict):
            value = {k: (-1 if v is None and k != "enabled" else v) for k, v in value.items()}
        config.check_fields("autoscaling_settings", value, {"enabled": "bool", "min_number_of_allocations": "int",
                                                             "max_number_of_allocations": "int"}, locations, path)
    except errors.EsError as exc:
        raise errors.parse_error(locations.value(path), f"[{parent}] failed to parse field [adaptive_allocations]",
                                 exc) from exc
    return {k: (int(v) if k != "enabled" else v) for k, v in value.items()}


def adaptive_problems(settings: dict[str, Any]) -> list[str]:
    """AdaptiveAllocationsSettings.validate."""
    low, high = settings.get("min_number_of_allocations"), settings.get("max_number_of_allocations")
    has_low, has_high = low is not None and low != -1, high is not None and high != -1
    problems = []
    if has_low and low < 0:
        problems.append("[min_number_of_allocations] must be a non-negative integer or null")
    if has_high and high < 1:
        problems.append("[max_number_of_allocations] must be a positive integer or null")
    if has_low and has_high and low > high:
        problems.append("[min_number_of_allocations] must not be larger than [max_number_of_allocations]")
    return problems


def adaptive_json(settings: dict[str, Any]) -> dict[str, Any]:
    """AdaptiveAllocationsSettings.toXContent: `enabled` always, the bounds when set."""
    shown: dict[str, Any] = {"enabled": bool(settings.get("enabled"))}
    for name in ("min_number_of_allocations", "max_number_of_allocations"):
        if settings.get(name) is not None:
            shown[name] = settings[name]
    return shown


# --- _stats entries ------------------------------------------------------------------------------------

def model_entries(model: Model, deployments: list[Deployment], shown: list[Deployment],
                  cluster: ClusterInfo) -> list[dict[str, Any]]:
    """GetTrainedModelsStatsAction.Response.Builder.build for one model: one entry when it is not deployed,
    else one per deployment whose stats were fetched, by deployment id. An undeployed model has no
    `inference_stats` (those come from the stats index, which only in-JVM models fill)."""
    base = {"model_id": model.model_id, "model_size_stats": _size_stats(model), "pipeline_count": 0}
    if not deployments:
        return [base]
    fetched = {d.deployment_id for d in shown}
    return [{**base, "inference_stats": _overall(d), "deployment_stats": assignment_stats(d, cluster)}
            for d in sorted(deployments, key=lambda d: d.deployment_id) if d.deployment_id in fetched]


def _size_stats(model: Model) -> dict[str, int]:
    size = int(model.config.get("model_size_bytes", 0))
    if model.config.get("model_type") != "pytorch":
        return {"model_size_bytes": size, "required_native_memory_bytes": 0}
    # Approximate: Elasticsearch's estimate adds a fixed overhead and per-allocation memory.
    return {"model_size_bytes": size, "required_native_memory_bytes": 2 * size}


def _overall(deployment: Deployment) -> dict[str, Any]:
    """AssignmentStats.getOverallInferenceStats: the nodes' counts, no cache misses, no missing fields."""
    return {"failure_count": 0, "inference_count": deployment.counters.inference_count, "cache_miss_count": 0,
            "missing_all_fields_count": 0, "timestamp": int(time.time() * 1000)}


def assignment_stats(deployment: Deployment, cluster: ClusterInfo) -> dict[str, Any]:
    """AssignmentStats.toXContent, in its field order, for the stand-in's one node."""
    params, state = deployment.params, deployment.state
    allocated = deployment.allocations if state == "started" else 0
    stats: dict[str, Any] = {"deployment_id": deployment.deployment_id, "model_id": deployment.model_id,
                             "threads_per_allocation": params["threads_per_allocation"],
                             "number_of_allocations": deployment.allocations}
    if deployment.adaptive is not None:
        stats["adaptive_allocations"] = adaptive_json(deployment.adaptive)
    stats |= {"queue_capacity": params["queue_capacity"], "state": state}
    if deployment.reason:
        stats["reason"] = deployment.reason
    if state in ("started", "starting"):
        status = ("starting" if allocated == 0 else
                  "fully_allocated" if allocated >= deployment.allocations else "started")
        stats["allocation_status"] = {"allocation_count": allocated, "target_allocation_count": deployment.allocations,
                                      "state": status}
    cache_bytes = parse_byte_size(params["cache_size"], "cache_size")[0]
    stats |= {"cache_size": byte_size_human(cache_bytes), "priority": params["priority"],
              "start_time": deployment.start_time}
    node = _node_stats(deployment, cluster)
    if deployment.counters.inference_count:
        stats["inference_count"] = deployment.counters.inference_count
    stats |= {"peak_throughput_per_minute": node["peak_throughput_per_minute"], "nodes": [node]}
    return stats


def _node_stats(deployment: Deployment, cluster: ClusterInfo) -> dict[str, Any]:
    node: dict[str, Any] = {"node": {cluster.node_id: cluster.node()}}
    if deployment.state == "started":
        node["routing_state"] = {"routing_state": "started"}
        threads = deployment.params["threads_per_allocation"]
        return node | deployment.counters.node_fields(deployment.start_time, threads, deployment.allocations)
    # NodeStats.forNotStartedState: the route's state and reason, no counters.
    node["routing_state"] = {"routing_state": deployment.state, **({"reason": deployment.reason}
                                                                    if deployment.reason else {})}
    return node | {"peak_throughput_per_minute": 0, "throughput_last_minute": 0}
