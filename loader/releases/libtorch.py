"""What an Elasticsearch release can run: its libtorch, the TorchScript file versions that reads, and the
operation check of its native process. The facts are data (`loader/data/*.json`), read here once.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """'9.2.0', '8.19.8-SNAPSHOT', '9.6.0 (main, unreleased)' -> (9, 2, 0)."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"{text!r} is not an Elasticsearch version")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_text(version: Version) -> str:
    return ".".join(map(str, version))


@cache
def _data(name: str) -> dict[str, Any]:
    return json.loads(resources.files("loader").joinpath("data", name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Release:
    es_from: Version
    es_to: Version
    libtorch: str
    uncertain: bool


def releases() -> list[Release]:
    return [Release(parse_version(r["es_from"]), parse_version(r["es_to"]), r["libtorch"], bool(r.get("uncertain")))
            for r in _data("es_libtorch.json")["ranges"] if not r.get("prerelease_only")]


def libtorch_for(es_version: Version) -> str | None:
    """The libtorch of the release range holding es_version; a release newer than the table gets the latest."""
    table = releases()
    for release in table:
        if release.es_from <= es_version <= release.es_to:
            return release.libtorch
    newest = max(table, key=lambda r: r.es_to)
    same_line = [r for r in table if r.es_from[:2] == es_version[:2]]
    if es_version > newest.es_to or (same_line and es_version > max(r.es_to for r in same_line)):
        return (max(same_line, key=lambda r: r.es_to) if same_line else newest).libtorch
    return None


def max_file_version(libtorch: str) -> int | None:
    return _data("es_libtorch.json")["max_readable_torchscript_file_version"].get(libtorch)


def torch_version(text: str) -> Version:
    """'2.13.0+cpu' -> (2, 13, 0)."""
    return parse_version(text.split("+")[0])


def oldest_release_with_libtorch_at_least(libtorch: str) -> Version | None:
    wanted = torch_version(libtorch)
    fitting = [r.es_from for r in releases() if torch_version(r.libtorch) >= wanted]
    return min(fitting) if fitting else None
