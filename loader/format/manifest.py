"""The manifest: what a bundle contains, bound together and signed.

`Manifest.from_bytes` is the only way to get a manifest from untrusted bytes: it either returns a valid
object or raises `LayoutError` naming the field. `Manifest.to_bytes` gives the canonical encoding that the
writer signs; the reader verifies the signature over the bytes it read, never over a re-encoding.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from loader.errors import LayoutError
from loader.format import records
from loader.format.canonical import JsonProblem, canonical_bytes, strict_loads
from loader.format.layout import MANIFEST, ROLES
from loader.format.model_config import model_id_problem
from loader.format.package import name_problem, package_name
from loader.format.records import fields_problem

SCHEMA_V1 = "esbundle.manifest.v1"
SUPPORTED_SCHEMAS = (SCHEMA_V1,)
PAYLOAD_TYPE = "application/vnd.esbundle.manifest.v1+json"
COMPRESSIONS = ("none", "zstd")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


class _Fields:
    """Typed access to one JSON object, with errors that name the field's full path."""

    def __init__(self, obj: Any, where: str, allowed: Sequence[str]) -> None:
        if not isinstance(obj, dict):
            raise _bad(where, "must be an object")
        unknown = sorted(set(obj) - set(allowed))
        if unknown:
            raise _bad(where, "has unknown field(s) " + ", ".join(unknown))
        self.obj, self.where = obj, where

    def _get(self, name: str, optional: bool) -> Any:
        if name not in self.obj:
            if optional:
                return None
            raise _bad(f"{self.where}.{name}", "is missing")
        return self.obj[name]

    def str(self, name: str, pattern: re.Pattern[str] | None = None, optional: bool = False) -> Any:
        value = self._get(name, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise _bad(f"{self.where}.{name}", "must be a non-empty string")
        if pattern and not pattern.match(value):
            raise _bad(f"{self.where}.{name}", f"has an invalid value {value!r}")
        return value

    def int(self, name: str, minimum: int = 0, optional: bool = False) -> Any:
        value = self._get(name, optional)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _bad(f"{self.where}.{name}", f"must be an integer >= {minimum}")
        return value

    def obj_(self, name: str) -> dict[str, Any]:
        value = self._get(name, optional=True)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _bad(f"{self.where}.{name}", "must be an object")
        return value

    def list_(self, name: str, optional: bool = False) -> list[Any]:
        value = self._get(name, optional)
        if value is None and optional:
            return []
        if not isinstance(value, list):
            raise _bad(f"{self.where}.{name}", "must be a list")
        return value


def _check_times(f: _Fields) -> None:
    times = {}
    for name in ("created_at", "expires_at"):
        value = f.str(name, _TIME, optional=name == "expires_at")
        if value is not None:
            try:
                times[name] = parse_time(value)
            except ValueError:
                raise _bad(f"manifest.{name}", f"is not a valid UTC time {value!r}") from None
    if "expires_at" in times and times["expires_at"] <= times["created_at"]:
        raise _bad("manifest.expires_at", "is not after created_at")


def _check_records(samples: list[Any], compatibility: dict[str, Any], provenance: dict[str, Any]) -> None:
    why = fields_problem(compatibility, records.COMPATIBILITY)
    if why:
        raise _bad("manifest.compatibility", why)
    source = provenance.get("source", {})
    why = "must be an object" if not isinstance(source, dict) else fields_problem(source, records.SOURCE)
    if why:
        raise _bad("manifest.provenance.source", why)
    for i, sample in enumerate(samples):
        why = records.sample_problem(sample)
        if why:
            raise _bad(f"manifest.samples[{i}]", why)


def _check_model_id(model_id: str, package: Package | None) -> None:
    """An ordinary model id never starts with a dot; a package's id is its name with one."""
    if package is None:
        why = model_id_problem(model_id)
    else:
        why = None if model_id == package.model_id else f"must be {package.model_id!r}, the package's id"
        why = why or name_problem(package_name(model_id))
    if why:
        raise _bad("manifest.model_id", why)


def _bad(where: str, what: str) -> LayoutError:
    return LayoutError(f"{MANIFEST}: field {where} {what}", hint="the bundle was not written by a compatible esbundle")


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    """One file of the bundle: the bytes on the medium (stored) and what they decompress to."""

    path: str
    role: str
    compression: str
    stored_size: int
    stored_sha256: str
    size: int
    sha256: str
    part: int | None = None
    volume: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path, "role": self.role, "compression": self.compression,
            "stored_size": self.stored_size, "stored_sha256": self.stored_sha256,
            "size": self.size, "sha256": self.sha256,
        }
        if self.part is not None:
            out["part"] = self.part
        if self.volume is not None:
            out["volume"] = self.volume
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> FileEntry:
        f = _Fields(obj, where, ("path", "role", "compression", "stored_size", "stored_sha256", "size",
                                 "sha256", "part", "volume"))
        role = f.str("role")
        if role not in ROLES:
            raise _bad(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        compression = f.str("compression")
        if compression not in COMPRESSIONS:
            raise _bad(f"{where}.compression", f"must be one of {', '.join(COMPRESSIONS)}")
        return cls(path=f.str("path"), role=role, compression=compression,
                   stored_size=f.int("stored_size"), stored_sha256=f.str("stored_sha256", _HEX64),
                   size=f.int("size"), sha256=f.str("sha256", _HEX64),
                   part=f.int("part", optional=True), volume=f.int("volume", 1, optional=True))


@dataclass(frozen=True, kw_only=True)
class Definition:
    """The TorchScript file as a whole: it is cut into `part_count` raw parts of `part_size` bytes."""

    total_length: int
    part_size: int
    part_count: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"total_length": self.total_length, "part_size": self.part_size,
                "part_count": self.part_count, "sha256": self.sha256}

    @classmethod
    def from_json(cls, obj: Any) -> Definition:
        f = _Fields(obj, "definition", ("total_length", "part_size", "part_count", "sha256"))
        return cls(total_length=f.int("total_length", 1), part_size=f.int("part_size", 1),
                   part_count=f.int("part_count", 1), sha256=f.str("sha256", _HEX64))


@dataclass(frozen=True, kw_only=True)
class Package:
    """One of Elastic's packaged models, carried as published: its name, the repository file names the cluster
    asks for, the metadata it was published with (a copy of `package/metadata.json`, which is kept byte for byte),
    where it was fetched from and when."""

    name: str
    metadata: Mapping[str, Any]
    source_url: str
    fetched_at: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "metadata": dict(self.metadata), "source_url": self.source_url,
                "fetched_at": self.fetched_at}

    @classmethod
    def from_json(cls, obj: Any) -> Package:
        f = _Fields(obj, "manifest.package", ("name", "metadata", "source_url", "fetched_at"))
        name = f.str("name")
        why = name_problem(name)
        if why:
            raise _bad("manifest.package.name", why)
        f.str("fetched_at", _TIME)
        return cls(name=name, metadata=f.obj_("metadata"), source_url=f.str("source_url"),
                   fetched_at=obj["fetched_at"])

    @property
    def model_id(self) -> str:
        return "." + self.name


@dataclass(frozen=True, kw_only=True)
class Manifest:
    schema: str
    bundle_id: str
    model_id: str
    task_type: str
    bundle_version: int
    created_at: str
    expires_at: str | None
    signer_key_id: str
    definition: Definition
    files: tuple[FileEntry, ...]
    tools: Mapping[str, str] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    samples: tuple[Mapping[str, Any], ...] = ()
    compatibility: Mapping[str, Any] = field(default_factory=dict)
    volumes: int | None = None  # a multi-volume bundle: how many; every file names its volume
    package: Package | None = None  # one of Elastic's packaged models (installed through a model repository)

    _TOP = ("schema", "bundle_id", "model_id", "task_type", "bundle_version", "created_at", "expires_at",
            "signer_key_id", "definition", "files", "tools", "provenance", "samples", "compatibility", "volumes",
            "package")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "bundle_id": self.bundle_id, "model_id": self.model_id,
            "task_type": self.task_type, "bundle_version": self.bundle_version,
            "created_at": self.created_at, "expires_at": self.expires_at, "signer_key_id": self.signer_key_id,
            "definition": self.definition.to_json(),
            "files": [entry.to_json() for entry in sorted(self.files, key=lambda e: e.path)],
            "tools": dict(self.tools), "provenance": dict(self.provenance),
            "samples": [dict(s) for s in self.samples], "compatibility": dict(self.compatibility),
            **({"volumes": self.volumes} if self.volumes is not None else {}),
            **({"package": self.package.to_json()} if self.package is not None else {}),
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            obj = strict_loads(data)
        except JsonProblem as exc:
            raise LayoutError(f"{MANIFEST}: {exc}") from None
        if not isinstance(obj, dict):
            raise _bad("(top level)", "must be an object")
        schema = obj.get("schema")
        if schema not in SUPPORTED_SCHEMAS:
            raise LayoutError(
                f"{MANIFEST}: unknown schema version {schema!r} (this esbundle reads {', '.join(SUPPORTED_SCHEMAS)})",
                hint="use the esbundle release that wrote the bundle, or a newer one")
        f = _Fields(obj, "manifest", cls._TOP)
        _check_times(f)
        tools = f.obj_("tools")
        if not all(isinstance(v, str) for v in tools.values()):
            raise _bad("manifest.tools", "must map names to version strings")
        samples = f.list_("samples", optional=True)
        compatibility, provenance = f.obj_("compatibility"), f.obj_("provenance")
        _check_records(samples, compatibility, provenance)
        package = Package.from_json(obj["package"]) if obj.get("package") is not None else None
        _check_model_id(f.str("model_id"), package)
        files = tuple(FileEntry.from_json(item, f"files[{i}]") for i, item in enumerate(f.list_("files")))
        return cls(
            schema=schema, bundle_id=f.str("bundle_id", _UUID), model_id=f.str("model_id"),
            task_type=f.str("task_type"), bundle_version=f.int("bundle_version", 1),
            created_at=obj["created_at"], expires_at=obj.get("expires_at"),
            signer_key_id=f.str("signer_key_id", _HEX64), definition=Definition.from_json(obj.get("definition")),
            files=files, tools=tools, provenance=provenance, samples=tuple(samples),
            compatibility=compatibility, volumes=f.int("volumes", 1, optional=True), package=package,
        )

    # Convenience views used by verify, inspect and load.
    def parts(self) -> list[FileEntry]:
        return sorted((e for e in self.files if e.role == "definition_part"), key=lambda e: e.part or 0)

    @property
    def is_package(self) -> bool:
        return self.package is not None

    def file(self, role: str) -> FileEntry | None:
        return next((e for e in self.files if e.role == role), None)

    @property
    def stored_bytes(self) -> int:
        return sum(e.stored_size for e in self.files)
