"""Whether the cluster's PyTorch can run what this PyTorch traces: the export's side of the compatibility rules.

Elasticsearch's native process embeds one libtorch per release. A model saved by a newer torch uploads fine and
then fails at deployment, inside the closed network; so with `--target-es-version` an export with a newer torch
is refused (unless `--allow-newer-torch`, which the manifest records), and without one the export warns once.
The facts and the native process's own checks (file version, state hooks, operation allowlist) live on the
offline side (`loader.releases`) so that export predicts exactly what load will refuse.
Pure functions: the torch version is passed in, so the policy is decided before torch is even imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loader.errors import PolicyError, UsageError
from loader.releases.deployability import GraphFacts
from loader.releases.libtorch import (
    Version,
    libtorch_for,
    max_file_version,
    oldest_release_with_libtorch_at_least,
    parse_version,
    releases,
    torch_version,
    version_text,
)

# Config features and the release that introduced them (older clusters refuse the field).
FEATURE_MIN_ES = {"prefix_strings": (8, 12, 0), "embedding_size": (8, 8, 0)}


@dataclass(frozen=True)
class ClusterTorch:
    es_version: Version
    libtorch: str
    uncertain: bool  # the table's sources disagree on this range's boundary
    beyond_table: bool  # newer than any release the table knows: its latest libtorch is assumed

    @property
    def text(self) -> str:
        return version_text(self.es_version)


def cluster_torch(es_version: str) -> ClusterTorch:
    """The libtorch that an Elasticsearch release runs, from the table."""
    try:
        wanted = parse_version(es_version)
    except ValueError:
        raise UsageError(f"--target-es-version {es_version!r} is not a version (expected e.g. 9.2.0)") from None
    table = releases()
    first = min(r.es_from for r in table)
    if wanted < first:
        raise UsageError(f"--target-es-version {es_version}: Elasticsearch runs PyTorch models from "
                         f"{version_text(first)} on")
    libtorch = libtorch_for(wanted)
    if libtorch is None:
        raise UsageError(f"--target-es-version {es_version}: not a release the libtorch table knows")
    holding = [r for r in table if r.es_from <= wanted <= r.es_to]
    return ClusterTorch(es_version=wanted, libtorch=libtorch, uncertain=any(r.uncertain for r in holding),
                        beyond_table=wanted > max(r.es_to for r in table))


def newest_release() -> tuple[Version, str]:
    newest = max(releases(), key=lambda r: r.es_to)
    return newest.es_to, newest.libtorch


def check_torch(torch_text: str, target: ClusterTorch | None, allow_newer: bool) -> list[str]:
    """Refuse a torch newer than the target's libtorch (unless allowed); return the warnings to show."""
    ours = torch_version(torch_text)
    if target is None:
        newest, libtorch = newest_release()
        if ours > torch_version(libtorch):
            return [f"no --target-es-version given: this export uses torch {version_text(ours)}, but the newest "
                    f"Elasticsearch known here ({version_text(newest)}) runs libtorch {libtorch}, and a model saved "
                    f"by a newer torch may fail when the cluster loads it; pass --target-es-version to check, and "
                    f"install torch=={libtorch} to be safe"]
        return []
    warnings: list[str] = []
    if target.beyond_table:
        warnings.append(f"Elasticsearch {target.text} is newer than the libtorch table; assuming libtorch "
                        f"{target.libtorch} like the newest release known")
    if target.uncertain:
        warnings.append(f"the libtorch of Elasticsearch {target.text} is uncertain in the table "
                        f"({target.libtorch} assumed)")
    if ours > torch_version(target.libtorch):
        if not allow_newer:
            raise PolicyError(
                f"torch {torch_text} is newer than libtorch {target.libtorch}, which Elasticsearch {target.text} "
                "runs: the cluster may fail to load the traced model",
                hint=f"install torch=={target.libtorch} (pip install torch=={target.libtorch}) and export again, "
                     "or pass --allow-newer-torch to export anyway (recorded in the manifest)")
        warnings.append(f"--allow-newer-torch: tracing with torch {version_text(ours)} for Elasticsearch "
                        f"{target.text}, which runs libtorch {target.libtorch}")
    return warnings


def min_es_version(torch_text: str, file_version: int | None, features: set[str]) -> tuple[str, str]:
    """(lowest Elasticsearch release that can run the bundle, the oldest libtorch it needs).

    The libtorch needed is the oldest in the table that is at least the torch that traced and reads the archive's
    file version (the newest one when this torch is newer than all, which only a warning or an explicit
    --allow-newer-torch lets through). The release is the first with such a libtorch, raised for config features.
    A later release line may run an older libtorch (9.0 after 8.19.8), so the loader also compares
    `required_libtorch` and the graph facts with the cluster's own.
    """
    ours = torch_version(torch_text)
    candidates = sorted({r.libtorch for r in releases()}, key=torch_version)
    fitting = [v for v in candidates
               if torch_version(v) >= ours and (file_version is None or (max_file_version(v) or 0) >= file_version)]
    required = fitting[0] if fitting else candidates[-1]
    lowest = oldest_release_with_libtorch_at_least(required) or min(r.es_from for r in releases())
    for feature in features:
        lowest = max(lowest, FEATURE_MIN_ES[feature])
    return version_text(lowest), required


def compatibility_record(*, torch_text: str, graph: GraphFacts, target: ClusterTorch | None, allow_newer: bool,
                         features: set[str]) -> dict[str, Any]:
    """The manifest's `compatibility` block, which the loader's preflight reads."""
    minimum, required = min_es_version(torch_text, graph.file_version, features)
    return {"min_es_version": minimum, "required_libtorch": required,
            "traced_with_torch": version_text(torch_version(torch_text)),
            "target_es_version": target.text if target else None,
            "target_libtorch": target.libtorch if target else None,
            "allow_newer_torch": allow_newer, "graph": graph.to_json()}
