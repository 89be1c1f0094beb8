"""Packaged models (ids starting with `.`): `PUT _ml/trained_models/.<name>` fetches and imports a model package.

Owns what Elasticsearch does after a packaged id's request was parsed and validated (config.parse_packaged_config)
and checked against aliases and deployments (api.py), written from TransportPutTrainedModelAction
(checkForExistingTask, resolvePackageConfig, setTrainedModelConfigFieldsFromPackagedModel, the architecture
warning), TransportGetTrainedModelPackageConfigAction (metadata fetch, its checks and wrappers),
TrainedModelValidator (minimum_version), TrainedModelConfig.Builder.validateNoPackageOverrides,
ModelPackageConfig (lenient parser, resetPackageOnlyFields, toXContent), TransportLoadTrainedModelPackage (error
wrapping, wait_for_completion) and ModelImporter (vocabulary first; file route: sequential 1 MiB parts, then
sha256 and size; HTTP route: 5+1 ranges opened up front, the 5 read in parallel, the final chunk last, size only).
Repository reads are repository.py's. Parts are stored like uploaded parts (models.Store), so definition status,
`_start`, `_infer` and the stand-in's read-back see an imported model as any other.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import config, errors, repository, task_configs
from .cluster import ClusterInfo
from .errors import EsError
from .jsonscan import Locations
from .models import Model, Store
from .releases import Version, parse_version
from .repository import CHUNK_SIZE, JavaError, NotFound, Uri
from .rest import Request, Response
from .xcontent import Failed, Source

# MlConfigVersion: the release number up to 8.9, then detached numbers (V_10 in 8.10, V_11 in 8.11, V_12 from 8.12).
_DETACHED = (((8, 12, 0), (12, 0, 0)), ((8, 11, 0), (11, 0, 0)), ((8, 10, 0), (10, 0, 0)))
_STRING_FIELDS = ("packaged_model_id", "model_repository", "description", "minimum_version", "sha256",
                  "model_type", "vocabulary_file", "platform_architecture")
_OVERRIDES = ("description", "definition", "model_type", "metadata", "model_size_bytes", "inference_config")
_XCONTENT = "org.elasticsearch.xcontent.XContentParseException"


@dataclass
class Import:
    """A running ModelDownloadTask: a second PUT of the same id joins it."""

    done: threading.Event = field(default_factory=threading.Event)
    error: EsError | None = None


def ml_config_version(release: Version) -> Version:
    for since, number in _DETACHED:
        if release >= since:
            return number
    return release


class PackagedModels:
    def __init__(self, store: Store, cluster: ClusterInfo, model_repository: str) -> None:
        self.store = store
        self.cluster = cluster
        self.repository = model_repository
        self._lock = threading.Lock()
        self._imports: dict[str, Import] = {}

    # --- PUT ----------------------------------------------------------------------------------

    def put(self, request: Request, model_id: str, read: dict[str, Any], field_names: list[str]) -> Response:
        """TransportPutTrainedModelAction after the alias and deployment checks."""
        wait = request.flag("wait_for_completion")
        with self._lock:
            running = self._imports.get(model_id)
        if running is not None:  # checkForExistingTask: answer the stored model (after the task, if waiting)
            if wait:
                running.done.wait()
            return Response(200, self.store.require(model_id).config)
        name = model_id[1:]
        package = self.fetch_metadata(name)
        self._validate_package(package, read)
        stored = self._config(model_id, read, field_names, package)
        model = self.store.create(model_id, stored)
        job = self._start_import(model, package)
        if wait:
            job.done.wait()
            if job.error is not None:
                raise job.error
        return Response(200, stored, headers=self._architecture_warning(stored))

    def _validate_package(self, package: dict[str, Any], read: dict[str, Any]) -> None:
        """TrainedModelValidator.validatePackage: minimum_version, then validateNoPackageOverrides."""
        name, minimum = package["packaged_model_id"], package.get("minimum_version")
        prefix = f"Invalid model package configuration for [{name}], "
        if not minimum:
            raise errors.validation([prefix + "missing minimum_version property"])
        match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", minimum)
        if match is None:
            raise errors.validation([prefix + "failed to parse the minimum_version property"])
        cluster = ml_config_version(parse_version(self.cluster.release.number))
        if cluster < tuple(int(g) for g in match.groups()):
            raise errors.validation([f"The model [{name}] requires that all nodes are at least version [{minimum}]"])
        problems = [f"illegal to set [{f}] at inference model creation for packaged model" for f in _OVERRIDES
                    if read.get(f) is not None and (f != "model_size_bytes" or read[f] > 0)]
        if read.get("tags"):
            problems.append("illegal to set [tags] at inference model creation for packaged model")
        if problems:
            raise errors.validation(problems)

    def _config(self, model_id: str, read: dict[str, Any], field_names: list[str],
                package: dict[str, Any]) -> dict[str, Any]:
        """setTrainedModelConfigFieldsFromPackagedModel, then the stored config as toXContent shows it."""
        if not package.get("model_type") or not package.get("inference_config"):
            raise errors.not_emulated("model packages without [model_type] or [inference_config]")
        version = parse_version(self.cluster.release.number)
        model_type = package["model_type"].strip().upper()
        if model_type.lower() not in config.MODEL_TYPES:
            raise errors.illegal_argument(f"No enum constant {config.TYPE_ENUM}.{model_type}")
        filled = {"model_type": model_type.lower(), "tags": package.get("tags") or [],
                  "metadata": package.get("metadata") or {}, "inference_config": _inference_config(package, version)}
        if package.get("description"):
            filled["description"] = package["description"]
        for name, since in (("platform_architecture", (8, 11, 0)), ("prefix_strings", (8, 12, 0))):
            if package.get(name) is not None and version >= since:
                filled[name] = package[name]
        stored = config.stored_config(model_id, filled, field_names, self.cluster.release.number)
        kept = ("packaged_model_id", "model_repository", "minimum_version", "create_time", "size", "sha256")
        model_package = {k: package[k] for k in kept if package.get(k) not in (None, "")}
        model_package |= {"metadata": {}, "tags": []}
        if package.get("vocabulary_file"):
            model_package["vocabulary_file"] = package["vocabulary_file"]
        location = stored.pop("location")
        prefix_strings = stored.pop("prefix_strings", None)
        stored |= {"location": location, "model_package": model_package}
        if prefix_strings is not None:
            stored["prefix_strings"] = prefix_strings
        return stored

    def _architecture_warning(self, stored: dict[str, Any]) -> list[tuple[str, str]]:
        message = architecture_problem(stored, self.cluster.ml_platform)
        if message is None:
            return []
        return [("Warning", f'299 Elasticsearch-{self.cluster.release.number}-{"0" * 40} "{message}"')]

    # --- metadata -----------------------------------------------------------------------------

    def fetch_metadata(self, name: str) -> dict[str, Any]:
        """TransportGetTrainedModelPackageConfigAction.masterOperation."""
        try:
            uri = repository.resolve(self.repository, name + ".metadata.json")
            with repository.open_stream(uri) as stream:
                package = lenient_package(stream.read())
        except NotFound as exc:
            raise EsError(400, "illegal_argument_exception", "Failed to find package",
                          caused_by=exc.es_error()) from None
        except (JavaError, EsError) as exc:
            cause = exc.es_error() if isinstance(exc, JavaError) else exc
            raise EsError(400, "illegal_argument_exception", "Failed to load package metadata",
                          caused_by=cause) from None
        if package["packaged_model_id"] != name:
            raise errors.server_error("Invalid package name")
        if package.get("size", 0) <= 0:
            raise errors.server_error("Invalid package size")
        if not package.get("sha256") or len(package["sha256"]) != 64:
            raise errors.server_error("Invalid package sha")
        return {**package, "model_repository": self.repository}

    # --- import -------------------------------------------------------------------------------

    def _start_import(self, model: Model, package: dict[str, Any]) -> Import:
        job = Import()
        with self._lock:
            self._imports[model.model_id] = job
        threading.Thread(target=self._run, args=(job, model, package), daemon=True).start()
        return job

    def _run(self, job: Import, model: Model, package: dict[str, Any]) -> None:
        """TransportLoadTrainedModelPackage.importModel: Elasticsearch exceptions as they are, others wrapped."""
        try:
            Importer(self.store, model, package).run()
        except EsError as exc:
            job.error = exc
        except NotFound as exc:
            job.error = exc.es_error()
        except JavaError as exc:
            job.error = EsError(500, "status_exception", f"Model importing failed due to an Exception [{exc}]",
                                caused_by=exc.es_error())
        finally:
            with self._lock:
                self._imports.pop(model.model_id, None)
            job.done.set()


def architecture_problem(stored: dict[str, Any], platform: str) -> str | None:
    """MlPlatformArchitecturesUtil.verifyMlNodesAndModelArchitectures for one ML node."""
    wanted = stored.get("platform_architecture")
    if wanted is None or wanted == platform:
        return None
    return (f"The model being deployed ([{stored['model_id']}]) is platform specific and incompatible with ML nodes "
            f"in the cluster; expected [{wanted}]; but was [{platform}]")


def lenient_package(raw: bytes) -> dict[str, Any]:
    """ModelPackageConfig.fromXContentLenient: unknown fields ignored, declared ones typed."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise JavaError(_XCONTENT, f"Failed to parse object: {exc}") from None
    if not isinstance(body, dict):
        raise JavaError(_XCONTENT, "[packaged_model_id] Expected START_OBJECT")
    kinds: dict[str, Callable[[Any], bool]] = {
        **{name: lambda v: isinstance(v, str) for name in _STRING_FIELDS},
        "size": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.isdigit()),
        "inference_config": lambda v: isinstance(v, dict), "metadata": lambda v: isinstance(v, dict),
        "prefix_strings": lambda v: isinstance(v, dict), "create_time": lambda v: isinstance(v, (int, str)),
        "tags": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v)}
    package = {}
    for name, value in body.items():
        if name in kinds and value is not None:
            if not kinds[name](value):
                raise JavaError(_XCONTENT, f"[packaged_model_id] failed to parse field [{name}]")
            package[name] = int(value) if name == "size" else value
    if "packaged_model_id" not in package:
        raise JavaError("java.lang.IllegalArgumentException", "Required [packaged_model_id]")
    if package.get("size", 0) < 0:
        raise JavaError("java.lang.IllegalArgumentException", "[size] must not be negative.")
    if isinstance(package.get("create_time"), str):
        package["create_time"] = int(datetime.fromisoformat(package["create_time"].replace("Z", "+00:00"))
                                     .timestamp() * 1000)
    return package


def _inference_config(package: dict[str, Any], version: Version) -> dict[str, Any]:
    """parseInferenceConfigFromModelPackage (the stand-in parses it with the strict task parsers)."""
    text = json.dumps({"inference_config": package["inference_config"]})
    try:
        return task_configs.parse(package["inference_config"], Source(text, Locations(text)), version)
    except Failed as failure:
        raise failure.error from None


class Importer:
    """ModelImporter for one model: vocabulary, then the definition by the file or the HTTP route."""

    def __init__(self, store: Store, model: Model, package: dict[str, Any]) -> None:
        self.store, self.model, self.package = store, model, package
        self.size = int(package["size"])
        self.total_parts = (self.size + CHUNK_SIZE - 1) // CHUNK_SIZE
        self.repository = package["model_repository"]

    def run(self) -> None:
        uri = repository.resolve(self.repository, self.package["packaged_model_id"] + ".pt")
        vocabulary = self._load_vocabulary() if self.package.get("vocabulary_file") is not None else None
        if repository.is_file(uri):
            self._from_file(uri, vocabulary)
        else:
            self._from_http(uri, vocabulary)

    def _load_vocabulary(self) -> dict[str, list[Any]]:
        """ModelLoaderUtils.loadVocabulary: a `.json` path, at most 20 MB, `vocabulary`/`merges`/`scores` lists."""
        uri = repository.resolve(self.repository, self.package["vocabulary_file"])
        if not uri.path.endswith(".json"):
            raise repository.illegal_argument("unknown format vocabulary file format")
        try:
            with repository.open_stream(uri) as stream:
                raw = stream.read(repository.VOCABULARY_LIMIT)  # Streams.limitStream: cut at the limit
            return vocabulary_parts(raw)
        except (JavaError, NotFound, EsError) as exc:
            cause = exc if isinstance(exc, EsError) else exc.es_error()
            raise EsError(500, "exception", "Failed to load vocabulary file", caused_by=cause) from None

    def _upload_vocabulary(self, parts: dict[str, list[Any]] | None) -> None:
        """PutTrainedModelVocabularyAction with allowOverwriting, validated as a REST upload is."""
        if parts is None:
            return
        document = config.vocabulary_document(self.model.model_id, self.model.config, parts["vocabulary"],
                                              parts["merges"], parts["scores"])
        self.store.put_vocabulary(self.model, document, overwrite=True)

    def _store_part(self, number: int, data: bytes) -> None:
        """PutTrainedModelDefinitionPartAction with allowOverwriting, as the importer sends each chunk."""
        if not data:
            raise errors.illegal_argument("[definition_length] must be greater than 0")
        self.store.put_part(self.model, number, data, self.size, self.total_parts, overwrite=True)
        self.store.record_attempt(self.model.model_id, number, "stored")
        if not self.model.config.get("model_size_bytes"):
            self.store.update_config(self.model, {**self.model.config, "model_size_bytes": self.size})

    def _from_file(self, uri: Uri, vocabulary: dict[str, list[Any]] | None) -> None:
        """readModelDefinitionFromFile: every part in order, then sha256, then the byte count."""
        stream = repository.open_stream(uri)
        self._upload_vocabulary(vocabulary)
        digest, read = hashlib.sha256(), 0
        with stream:
            for part in range(self.total_parts):
                data = repository.read_chunk(stream)
                digest.update(data)
                read += len(data)
                self._store_part(part, data)
        if digest.hexdigest() != self.package["sha256"]:
            raise errors.server_error(f"Model sha256 checksums do not match, expected [{self.package['sha256']}] "
                                      f"but got [{digest.hexdigest()}]")
        self._check_size(read)

    def _check_size(self, read: int) -> None:
        if read != self.size:
            raise errors.server_error(f"Model size does not match, expected [{self.size}] but got [{read}]")

    def _from_http(self, uri: Uri, vocabulary: dict[str, list[Any]] | None) -> None:
        """downloadModelDefinition: every range's connection opened first, the first ranges read in parallel on the
        5-thread download pool, then the final single-chunk range; only the byte count is checked."""
        ranges = repository.split(self.size)
        streams: list[Any] = []
        try:
            for byte_range in ranges:
                streams.append(repository.open_stream(uri, (byte_range.start, byte_range.end)))
            self._upload_vocabulary(vocabulary)
            with ThreadPoolExecutor(repository.NUMBER_OF_STREAMS) as pool:
                futures = [pool.submit(self._download, s, r) for s, r in zip(streams[:-1], ranges[:-1], strict=True)]
                counts = [f.result() for f in futures]
            counts.append(self._download(streams[-1], ranges[-1]))
        finally:
            for stream in streams:
                stream.close()
        self._check_size(sum(counts))

    def _download(self, stream: Any, byte_range: repository.Range) -> int:
        """HttpStreamChunker over one range: a part per chunk read, numbered from the range's first part."""
        read = 0
        for offset in range(byte_range.parts):
            data = repository.read_chunk(stream)
            read += len(data)
            self._store_part(byte_range.first_part + offset, data)
        return read


def vocabulary_parts(raw: bytes) -> dict[str, list[Any]]:
    """ModelLoaderUtils.parseVocabParts: a map of lists; strings by toString, scores cast to Double."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise JavaError(_XCONTENT, f"Failed to parse object: {exc}") from None
    if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
        raise JavaError(_XCONTENT, "Failed to parse list: expected START_ARRAY")
    scores = body.get("scores", [])
    if any(not isinstance(s, float) for s in scores):
        raise JavaError("java.lang.ClassCastException",
                        "class java.lang.Integer cannot be cast to class java.lang.Double")
    return {"vocabulary": [_to_string(v) for v in body.get("vocabulary", [])],
            "merges": [_to_string(v) for v in body.get("merges", [])], "scores": scores}


def _to_string(value: Any) -> str:
    """Object::toString of a parsed JSON value (strings as they are)."""
    return value if isinstance(value, str) else json.dumps(value)
