"""Whether the cluster's PyTorch can run what this PyTorch traces.

Elasticsearch's native process embeds one libtorch per release (loader/data/es_libtorch.json). A model saved
by a newer torch uploads fine and then fails at deployment, inside the closed network; so with
`--target-es-version` an export with a newer torch is refused (unless `--allow-newer-torch`), and without one
the export warns. Newer releases also check the graph's operations (loader/data/es_model_ops.json).
Pure functions over the two tables; the caller passes the torch version in, so this runs before torch loads.
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from loader.errors import ModelError, PolicyError, UsageError

Version = tuple[int, int, int]
# Config features and the release that introduced them (older clusters refuse the field).
FEATURE_MIN_ES = {"prefix_strings": "8.12.0", "embedding_size": "8.8.0"}
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")


@cache
def libtorch_table() -> dict[str, Any]:
    return json.loads(resources.files("loader").joinpath("data/es_libtorch.json").read_text(encoding="utf-8"))


@cache
def operations_table() -> dict[str, Any]:
    return json.loads(resources.files("loader").joinpath("data/es_model_ops.json").read_text(encoding="utf-8"))


def parse_version(text: str) -> Version:
    """'9.2.0' -> (9, 2, 0); '9.2' -> (9, 2, 0); local and pre-release tails ('2.13.0+cpu', '8.0.0-alpha1',
    '9.6.0 (main, unreleased)') are ignored."""
    match = _VERSION.match(text)
    if not match:
        raise UsageError(f"{text!r} is not a version (expected e.g. 9.2.0)")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def show(version: Version) -> str:
    return ".".join(str(n) for n in version)


def _ranges(table: dict[str, Any]) -> list[dict[str, Any]]:
    releases = (r for r in table["ranges"] if not r.get("prerelease_only"))
    return sorted(releases, key=lambda r: parse_version(r["es_from"]))


@dataclass(frozen=True)
class ClusterTorch:
    es_version: str
    libtorch: str
    uncertain: bool  # the table's sources disagree on this range's boundary
    beyond_table: bool  # newer than any release the table knows: its last entry is assumed


def cluster_torch(es_version: str, table: dict[str, Any] | None = None) -> ClusterTorch:
    """The libtorch an Elasticsearch release runs: the range holding it, or the latest range that starts before it
    (a patch release newer than the table's last known patch keeps its minor's libtorch)."""
    table = table or libtorch_table()
    wanted = parse_version(es_version)
    ranges = _ranges(table)
    if wanted < parse_version(ranges[0]["es_from"]):
        raise UsageError(f"--target-es-version {es_version}: Elasticsearch runs PyTorch models from "
                         f"{ranges[0]['es_from']} on")
    chosen = [r for r in ranges if parse_version(r["es_from"]) <= wanted][-1]
    beyond = wanted > max(parse_version(r["es_to"]) for r in ranges)
    return ClusterTorch(es_version=show(wanted), libtorch=chosen["libtorch"],
                        uncertain=bool(chosen.get("uncertain")), beyond_table=beyond)


def latest(table: dict[str, Any] | None = None) -> dict[str, Any]:
    return _ranges(table or libtorch_table())[-1]


def check_torch(torch_version: str, target: ClusterTorch | None, allow_newer: bool) -> list[str]:
    """Refuse a torch newer than the target's libtorch (unless allowed); return warnings to show."""
    ours = parse_version(torch_version)
    if target is None:
        newest = latest()
        if ours > parse_version(newest["libtorch"]):
            return [f"no --target-es-version given: this export uses torch {show(ours)}, but the newest "
                    f"Elasticsearch known here ({newest['es_to']}) runs libtorch {newest['libtorch']}; a model "
                    f"saved by a newer torch may fail when the cluster loads it. Pass --target-es-version "
                    f"to check (and install torch=={newest['libtorch']} to be safe)"]
        return []
    warnings: list[str] = []
    if target.beyond_table:
        warnings.append(f"Elasticsearch {target.es_version} is newer than the libtorch table; assuming it runs "
                        f"libtorch {target.libtorch} like the last release known")
    if target.uncertain:
        warnings.append(f"the libtorch of Elasticsearch {target.es_version} is uncertain in the table "
                        f"({target.libtorch} assumed)")
    if ours > parse_version(target.libtorch):
        if not allow_newer:
            raise PolicyError(
                f"torch {torch_version} is newer than libtorch {target.libtorch}, which Elasticsearch "
                f"{target.es_version} runs: the cluster may fail to load the traced model",
                hint=f"install torch=={target.libtorch} (pip install torch=={target.libtorch}) and export again, "
                     "or pass --allow-newer-torch to export anyway (recorded in the manifest)")
        warnings.append(f"--allow-newer-torch: tracing with torch {show(ours)} for Elasticsearch "
                        f"{target.es_version}, which runs libtorch {target.libtorch}")
    return warnings


def check_file_version(file_version: int, target: ClusterTorch | None) -> None:
    """A libtorch refuses an archive version above the highest it reads; no flag can make that work."""
    if target is None:
        return
    readable = libtorch_table()["max_readable_torchscript_file_version"].get(target.libtorch)
    if readable is not None and file_version > readable:
        raise PolicyError(f"the saved TorchScript archive has file version {file_version}, but libtorch "
                          f"{target.libtorch} (Elasticsearch {target.es_version}) reads at most {readable}",
                          hint=f"export with torch=={target.libtorch}")


def min_es_version(torch_version: str, file_version: int, features: set[str]) -> tuple[str, str]:
    """(lowest Elasticsearch release that can run the bundle, the libtorch it needs at least).

    The libtorch needed is the oldest one at least as new as the torch that traced (the table's newest when the
    torch is newer than all, which only an explicit --allow-newer-torch or a warning lets through) and able to
    read the archive version. The release is the first whose libtorch is at least that, raised for config
    features. A later release line may run an older libtorch (9.0 after 8.19.8): the loader compares
    `required_libtorch` with the cluster's own.
    """
    table = libtorch_table()
    readable = table["max_readable_torchscript_file_version"]
    ours = parse_version(torch_version)
    candidates = sorted({r["libtorch"] for r in _ranges(table)}, key=parse_version)
    fitting = [v for v in candidates if parse_version(v) >= ours and readable.get(v, 0) >= file_version]
    required = fitting[0] if fitting else candidates[-1]
    lowest = min(parse_version(r["es_from"]) for r in _ranges(table)
                 if parse_version(r["libtorch"]) >= parse_version(required))
    for feature in features:
        lowest = max(lowest, parse_version(FEATURE_MIN_ES[feature]))
    return show(lowest), required


def validates_graph(es_version: str) -> bool:
    """Releases that check every operation of the graph: 8.19.20 and later 8.19.x, 9.4.0 and later."""
    v = parse_version(es_version)
    return v >= (9, 4, 0) or (8, 19, 20) <= v < (9, 0, 0)


def graph_problems(operations: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(forbidden operations, operations outside the allowed list), each sorted."""
    table = operations_table()
    forbidden = sorted(set(operations) & set(table["forbidden_operations"]))
    unknown = sorted(set(operations) - set(table["allowed_operations"]) - set(forbidden))
    return forbidden, unknown


def check_graph(operations: tuple[str, ...], target: ClusterTorch | None) -> list[str]:
    """Refuse what the target release's graph check refuses; warn about what a newer release would."""
    forbidden, unknown = graph_problems(operations)
    if forbidden:
        raise ModelError("the traced graph contains operations Elasticsearch forbids: " + ", ".join(forbidden))
    if not unknown:
        return []
    if target is not None and validates_graph(target.es_version):
        raise PolicyError(f"Elasticsearch {target.es_version} would refuse the model: Model graph does not match any "
                          f"supported architecture. Unrecognised operations: {', '.join(unknown)}",
                          hint="target an Elasticsearch release without the graph check (9.2, 9.3), or another model")
    return [f"the traced graph uses operations outside Elasticsearch's allowed list ({', '.join(unknown)}): "
            "releases 8.19.20+ and 9.4.0+ would refuse it"]


def state_hook_entries(path: Path) -> list[str]:
    """Archive entries whose bytes contain __setstate__/__getstate__ (refused by 8.19.20, 9.4.5, 9.5.0+).
    Code and pickles only: tensor storages (`data/N`) are raw numbers, and reading them all would cost gigabytes."""
    found = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if "/data/" in name or "/constants/" in name:
                continue
            data = archive.read(name)
            if b"__setstate__" in data or b"__getstate__" in data:
                found.append(name)
    return sorted(found)
