"""`esbundle export --elastic-model NAME`: one of Elastic's packages, fetched, checked as the cluster checks it,
measured and sampled where torch is present, and written as a signed bundle.

Nothing is written before the metadata and vocabulary passed the cluster's checks; the `.pt` downloads into a
hidden directory beside the target (kept after a cut so a rerun resumes, removed after a mismatch and after the
bundle is written).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bundler.elastic import fetch
from bundler.elastic.samples import package_samples, tokenization_of, why_no_samples
from bundler.graph import assess, parse_target
from bundler.keys import load_signing_key
from bundler.options import BundleOptions, check_bundle_options
from bundler.stages import StageLog, StageTime
from bundler.writer.bundle import creation_time, write_package_bundle
from bundler.writer.travel import prepared_travel
from loader import settings
from loader.errors import ModelError, UsageError
from loader.format import package as packages
from loader.format.canonical import JsonProblem, strict_loads
from loader.format.manifest import Package, format_time
from loader.releases.libtorch import version_text
from loader.releases.ml_config import first_release


@dataclass(frozen=True, kw_only=True)
class PackageExportOptions(BundleOptions):
    name: str  # `elser_model_2`, or the model id `.elser_model_2`
    models_url: str | None = None  # default: ESBUNDLE_ELASTIC_MODELS_URL, then Elastic's model server
    progress: bool | None = None


@dataclass(frozen=True, kw_only=True)
class PackageExportResult:
    out: Path
    es_model_id: str
    package: str
    task_type: str
    tokenization: str
    bundle_id: str
    definition_bytes: int
    part_count: int
    source_url: str
    samples: int
    graph_measured: bool
    compatibility: dict[str, Any]
    stages: tuple[StageTime, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "stages"}
        doc["out"] = str(self.out)
        doc["stages"] = {s.name: round(s.seconds, 3) for s in self.stages}
        return doc


@dataclass(frozen=True)
class _Fetched:
    metadata_bytes: bytes
    metadata: dict[str, Any]
    vocabulary_bytes: bytes
    vocabulary: dict[str, Any]


def models_url(options: PackageExportOptions) -> str:
    return options.models_url or settings.get(settings.ELASTIC_MODELS_URL) or fetch.DEFAULT_URL


def run_package_export(options: PackageExportOptions, *, log: StageLog | None = None) -> PackageExportResult:
    log = log or StageLog()
    name = packages.package_name(options.name.strip())
    why = packages.name_problem(name)
    if why:
        raise UsageError(f"--elastic-model: {why}")
    check_bundle_options(replace(options, es_model_id=None))
    key = load_signing_key(options.signing_key)
    repository = fetch.Repository.parse(models_url(options))
    target = parse_target(options.target_es_version)
    with log.stage("fetch", f"package {name} from {repository.base}"):
        fetched = _fetch_small_files(repository, name)
        files = packages.repository_files(name, fetched.metadata)
        download = options.out.parent / f".{options.out.name}.download"
        download.mkdir(parents=True, exist_ok=True)
        definition = download / files.model
        try:
            fetch.fetch_definition(repository.url_of(files.model), definition, fetched.metadata["size"],
                                   fetched.metadata["sha256"], progress=options.progress)
        except ModelError:
            if not any(download.iterdir()):
                download.rmdir()  # a mismatch leaves nothing; a cut keeps the partial file for the rerun
            raise
    with log.stage("measure", "graph and samples"):
        verdict = assess(definition, target, options.allow_unsupported_ops, required=False)
        verdict.report(log)
        samples = _samples(definition, fetched, log) if verdict.facts is not None else []
        if verdict.facts is None:
            log.warn("no samples recorded (torch is not installed): load cannot prove the deployed model's answers")
    compatibility = _compatibility(fetched.metadata, dict(verdict.record))
    package = Package(name=name, metadata=fetched.metadata, source_url=repository.base,
                      fetched_at=format_time(creation_time()))
    with log.stage("write", str(options.out)), prepared_travel(options.travel) as travel:
        manifest = write_package_bundle(
            options.out, definition=definition, metadata_bytes=fetched.metadata_bytes,
            vocabulary_bytes=fetched.vocabulary_bytes, package=package, signing_key=key,
            bundle_version=options.bundle_version, expires_in_days=options.expires_in_days,
            part_size=options.part_size, samples=samples, compatibility=compatibility, travel=travel,
            provenance={"source": {"kind": "elastic_package", "url": repository.url_of(files.model)},
                        "torchscript_file_version": verdict.facts.file_version if verdict.facts else None})
    shutil.rmtree(download, ignore_errors=True)
    return PackageExportResult(
        out=options.out, es_model_id=manifest.model_id, package=name, task_type=manifest.task_type,
        tokenization=tokenization_of(fetched.metadata)[0], bundle_id=manifest.bundle_id,
        definition_bytes=manifest.definition.total_length, part_count=manifest.definition.part_count,
        source_url=repository.base, samples=len(samples), graph_measured=verdict.facts is not None,
        compatibility={k: v for k, v in compatibility.items() if k != "graph"}, stages=tuple(log.times),
        warnings=tuple(log.warnings))


def _fetch_small_files(repository: fetch.Repository, name: str) -> _Fetched:
    """The metadata and the vocabulary it names, each refused with the cluster's words before anything is kept."""
    url = repository.url_of(name + packages.METADATA_SUFFIX)
    metadata_bytes = fetch.fetch_small(url, packages.MAX_METADATA_BYTES, "metadata")
    metadata = _parse(metadata_bytes, url)
    problems = packages.metadata_problems(metadata, name)
    if problems:
        raise ModelError(f"{url}: the cluster would refuse this package:\n  " + "\n  ".join(problems))
    url = repository.url_of(packages.repository_files(name, metadata).vocabulary)
    vocabulary_bytes = fetch.fetch_small(url, packages.MAX_PACKAGE_VOCABULARY_BYTES, "vocabulary")
    vocabulary = _parse(vocabulary_bytes, url)
    problems = packages.package_vocabulary_problems(vocabulary, len(vocabulary_bytes))
    if problems:
        raise ModelError(f"{url}: the cluster would refuse this vocabulary:\n  " + "\n  ".join(problems))
    return _Fetched(metadata_bytes, metadata, vocabulary_bytes, vocabulary)


def _parse(data: bytes, url: str) -> dict[str, Any]:
    try:
        value = strict_loads(data)
    except JsonProblem as exc:
        raise ModelError(f"{url}: {exc}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{url}: must be a JSON object")
    return value


def _samples(definition: Path, fetched: _Fetched, log: StageLog) -> list[dict[str, Any]]:
    why = why_no_samples(fetched.metadata, fetched.vocabulary)
    if why:
        log.warn(why)
        return []
    samples = package_samples(definition, fetched.metadata, fetched.vocabulary)
    log.say(f"  {len(samples)} samples recorded for the smoke test")
    return samples


def _compatibility(metadata: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    minimum = packages.parse_minimum_version(metadata["minimum_version"])
    release = first_release(minimum) if minimum else None
    if release is None:
        raise ModelError(f"package {metadata['packaged_model_id']}: minimum_version {metadata['minimum_version']} "
                         "is newer than every Elasticsearch release esbundle knows",
                         hint="use a newer esbundle")
    return {**record, "min_es_version": version_text(release)}


