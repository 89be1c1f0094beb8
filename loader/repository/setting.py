"""The setting that points a cluster at a model repository, and what the cluster requires of it, as lines to print.

Facts from Elasticsearch's MachineLearningPackageLoader (the setting and its start-up check) and the package
loader's master-node actions (see ../shared/reference/elastic-model-repository.md, sections 2, 3 and 7).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from loader.format.package import DEFAULT_FIELD
from loader.format.package import REPOSITORY_SETTING as SETTING


def file_url(directory: Path) -> str:
    """`file:///abs/dir/`: percent-encoded where a path needs it (the node parses the value as a URI), with the
    trailing slash the node would add anyway."""
    return directory.as_uri().rstrip("/") + "/"


def setting_line(url: str) -> str:
    return f"{SETTING}: {url}"


def _apply(url: str) -> list[str]:
    body = json.dumps({"persistent": {SETTING: url}}, separators=(",", ":"))
    return ["apply it: add that line to elasticsearch.yml on every master-eligible node and restart them one at a "
            "time,",
            f"  or set it at runtime: PUT _cluster/settings {body}"]


def _put(ids: Sequence[str]) -> list[str]:
    body = json.dumps({"input": {"field_names": [DEFAULT_FIELD]}}, separators=(",", ":"))
    return [f"then install the model [{model_id}] and prove it: esbundle load BUNDLE --trusted-key PUB --url ... "
            f"--start (or by hand: PUT _ml/trained_models/{model_id}?wait_for_completion=true {body})"
            for model_id in ids]


def file_requirements(directory: Path, ids: Sequence[str]) -> list[str]:
    url = file_url(directory)
    return [setting_line(url),
            "the elected master node reads this directory, so:",
            f"  - {directory} must be below each node's config directory (ES_PATH_CONF: /etc/elasticsearch for "
            "deb and rpm installs, config/ for archives), or the node refuses to start",
            "  - install the same files at this same path on every master-eligible node, readable by the user "
            "Elasticsearch runs as",
            *_apply(url), *_put(ids)]


def http_requirements(url: str, ids: Sequence[str], wildcard: bool) -> list[str]:
    lines = [setting_line(url)]
    if wildcard:
        lines.append("  (use this machine's name or address as the master-eligible nodes reach it, not the "
                     "wildcard address)")
    lines += ["the elected master node downloads from here: it must reach this address (no proxy, no "
              "credentials, no redirect)", *_apply(url), *_put(ids)]
    return lines
