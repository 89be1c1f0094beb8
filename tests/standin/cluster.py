"""The cluster-level answers: `GET /`, `GET /_license`, `GET /_nodes`, `GET /_ml/info`, `GET /_cluster/settings`.

Owns the emulated cluster's identity (names, uuid, one node with the `ml` role) and how the
`--es-version`, `--license`, `--ml-platform` and `--model-repository` options show in these documents.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .releases import Release

# Platforms.platformName run backwards: the JVM's `os.name` and `os.arch` (OsInfo in nodes info) that give an ML
# node's `<os>-<arch>`; platformName lower-cases the name, maps "mac os x" to darwin, any "windows*" to windows,
# and the arch "amd64" to x86_64, "i386" to x86.
_OS_NAMES = {"linux": "Linux", "darwin": "Mac OS X", "windows": "Windows Server 2022"}
_OS_ARCHS = {"x86_64": "amd64", "x86": "i386"}
MODEL_REPOSITORY = "xpack.ml.model_repository"

# Lucene release per Elasticsearch major.minor, for the version block (informational only).
_LUCENE = {(8, 5): "9.4.1", (8, 19): "9.12.2", (9, 0): "10.1.0", (9, 1): "10.2.2", (9, 2): "10.3.1"}


@dataclass
class ClusterInfo:
    release: Release
    license_type: str
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    cluster_uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    name: str = "standin-node-0"
    cluster_name: str = "esbundle-standin"
    ml_platform: str = "linux-x86_64"  # the ML node's `<os>-<arch>` (MlPlatformArchitecturesUtil); --ml-platform
    node_settings: dict[str, str] = field(default_factory=dict)  # elasticsearch.yml (only what the stand-in reads)
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @classmethod
    def persistent(cls, release: Release, license_type: str, data_dir: Path) -> ClusterInfo:
        """The cluster's identity (uuid, node id) is kept in the data directory, as a real cluster
        keeps it across restarts: clients that key state by `cluster_uuid` must see the same cluster."""
        identity_file = data_dir / "cluster.json"
        if identity_file.is_file():
            identity = json.loads(identity_file.read_text(encoding="utf-8"))
            return cls(release, license_type, node_id=identity["node_id"], cluster_uuid=identity["cluster_uuid"])
        info = cls(release, license_type)
        from .models import write_json

        write_json(identity_file, {"node_id": info.node_id, "cluster_uuid": info.cluster_uuid})
        return info

    @property
    def major(self) -> int:
        return self.release.version[0]

    def root(self) -> dict[str, Any]:
        major, minor, _ = self.release.version
        return {
            "name": self.name,
            "cluster_name": self.cluster_name,
            "cluster_uuid": self.cluster_uuid,
            "version": {
                "number": self.release.number,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0" * 40,
                "build_date": "2025-01-01T00:00:00.000000000Z",
                "build_snapshot": False,
                "lucene_version": _LUCENE.get((major, minor), "10.3.1"),
                "minimum_wire_compatibility_version": f"{major - 1}.19.0" if major >= 9 else f"{major - 1}.17.0",
                "minimum_index_compatibility_version": f"{major - 1}.0.0",
            },
            "tagline": "You Know, for Search",
        }

    def license(self) -> dict[str, Any]:
        return {
            "license": {
                "status": "active",
                "uid": str(uuid.UUID(int=0)),
                "type": self.license_type,
                "issue_date": "2025-01-01T00:00:00.000Z",
                "issue_date_in_millis": 1735689600000,
                **({"expiry_date": "2099-01-01T00:00:00.000Z", "expiry_date_in_millis": 4070908800000}
                   if self.license_type != "basic" else {}),
                "max_nodes": 1000,
                "max_resource_units": None,
                "issued_to": self.cluster_name,
                "issuer": "elasticsearch",
                "start_date_in_millis": -1,
            }
        }

    def node(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport_address": "127.0.0.1:9300",
            "host": "127.0.0.1",
            "ip": "127.0.0.1",
            "version": self.release.number,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": "0" * 40,
            "roles": ["data", "ingest", "master", "ml", "remote_cluster_client", "transform"],
            "attributes": {
                "ml.machine_memory": str(8 * 1024**3),
                "ml.max_jvm_size": str(2 * 1024**3),
                "ml.allocated_processors": "2",
                "ml.allocated_processors_double": "2.0",
                "xpack.installed": "true",
            },
            "os": self.os_info(),
        }

    def os_info(self) -> dict[str, Any]:
        """OsInfo.toXContent, with the name and arch that Platforms.platformName turns into `--ml-platform`."""
        system, _, arch = self.ml_platform.partition("-")
        name = _OS_NAMES.get(system, system)
        return {"refresh_interval_in_millis": 1000, "name": name, "pretty_name": name,
                "arch": _OS_ARCHS.get(arch, arch), "version": "6.8.0", "available_processors": 2,
                "allocated_processors": 2}

    def nodes(self) -> dict[str, Any]:
        return {
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "cluster_name": self.cluster_name,
            "nodes": {self.node_id: self.node()},
        }

    def ml_info(self) -> dict[str, Any]:
        return {
            "defaults": {
                "anomaly_detectors": {"model_memory_limit": "1gb", "categorization_examples_limit": 4,
                                      "model_snapshot_retention_days": 10,
                                      "daily_model_snapshot_retention_after_days": 1},
                "datafeeds": {"scroll_size": 1000},
            },
            "upgrade_mode": False,
            "native_code": {"version": self.release.number, "build_hash": "0" * 16},
            "limits": {
                "max_single_ml_node_processors": 2,
                "total_ml_processors": 2,
                "max_model_memory_limit": "3gb",
                "effective_max_model_memory_limit": "3gb",
                "total_ml_memory": "3gb",
            },
        }

    def settings(self, include_defaults: bool, flat: bool) -> dict[str, Any]:
        """RestClusterGetSettingsAction: no persistent or transient settings (`PUT _cluster/settings` is not
        emulated); with `include_defaults`, ClusterSettings.diff(cluster settings, node settings) puts a node-scope
        setting that elasticsearch.yml sets under `defaults`, with the yml's value (Setting.getRaw), else its default.
        The stand-in lists only the settings it emulates; `defaults` is left out when empty, as
        RestClusterGetSettingsResponse does."""
        answer: dict[str, Any] = {"persistent": {}, "transient": {}}
        if include_defaults and self.node_settings:
            answer["defaults"] = dict(self.node_settings) if flat else _structured(self.node_settings)
        return answer


def _structured(flat: dict[str, str]) -> dict[str, Any]:
    """Settings.toXContent without `flat_settings`: `a.b.c: v` becomes `{"a": {"b": {"c": v}}}`."""
    tree: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        *path, last = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return tree
