"""Elastic's packaged models (ELSER, E5, Rerank): names, repository files, and the cluster's checks of a package.

A package is three files in a model repository: `<name>.metadata.json`, `<name>.pt` and the vocabulary file the
metadata names. The cluster installs it when asked for the model id `.<name>`. Both sides use these rules: the
export refuses a package the cluster would refuse, the verifier checks the signed copy again, and the repository
commands write the files under the names the cluster will ask for. The checks and their texts follow
Elasticsearch's TransportGetTrainedModelPackageConfigAction, TrainedModelValidator and ModelLoaderUtils.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loader.format.model_config import MAX_MODEL_ID_LEN, MODEL_ID_RE, config_problems

# The cluster's setting naming its model repository, and its default: Elastic's server on the internet
# (MachineLearningPackageLoader.MODEL_REPOSITORY, DEFAULT_ML_MODELS_REPOSITORY).
REPOSITORY_SETTING = "xpack.ml.model_repository"
ELASTIC_REPOSITORY = "https://ml-models.elastic.co"
METADATA_SUFFIX = ".metadata.json"  # ModelLoaderUtils.METADATA_FILE_EXTENSION
MODEL_SUFFIX = ".pt"  # ModelLoaderUtils.MODEL_FILE_EXTENSION
# The package loader reads at most this much of a vocabulary (older releases 10 MB).
MAX_PACKAGE_VOCABULARY_BYTES = 20 * 1024 * 1024
MAX_METADATA_BYTES = 1 << 20
# The input field a packaged model gets: Elastic's documentation and the inference service both use it.
DEFAULT_FIELD = "text_field"
_MINIMUM_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# A repository file name the repository commands will write: one plain component, nothing that climbs out of the
# directory, nothing a filesystem treats specially.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")


@dataclass(frozen=True)
class RepositoryFiles:
    """The names the cluster asks its model repository for."""

    metadata: str
    model: str
    vocabulary: str

    def names(self) -> tuple[str, str, str]:
        return (self.metadata, self.vocabulary, self.model)


def package_name(name_or_id: str) -> str:
    """`elser_model_2` from `.elser_model_2` or `elser_model_2` (the package name is the id without its dot)."""
    return name_or_id[1:] if name_or_id.startswith(".") else name_or_id


def name_problem(name: str) -> str | None:
    """Elasticsearch validates a packaged id without its dot and an optional `_SNAPSHOT` suffix (MlStrings)."""
    core = name.removesuffix("_SNAPSHOT")
    if not MODEL_ID_RE.match(core) or len(core) > MAX_MODEL_ID_LEN:
        return (f"package name {name!r} must be lowercase alphanumeric, '-', '_' or '.', start and end with a letter "
                f"or digit, and be at most {MAX_MODEL_ID_LEN} characters (the model id is '.{name}')")
    return None


def repository_files(name: str, metadata: Mapping[str, Any]) -> RepositoryFiles:
    return RepositoryFiles(metadata=name + METADATA_SUFFIX, model=name + MODEL_SUFFIX,
                           vocabulary=str(metadata.get("vocabulary_file")))


def parse_minimum_version(text: Any) -> tuple[int, int, int] | None:
    match = _MINIMUM_VERSION.match(text) if isinstance(text, str) else None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def task_of(metadata: Mapping[str, Any]) -> str | None:
    inference = metadata.get("inference_config")
    if isinstance(inference, Mapping) and len(inference) == 1:
        return str(next(iter(inference)))
    return None


def cluster_config(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The model config the cluster builds from a package (for the checks that apply to every model)."""
    return {"model_type": metadata.get("model_type", "pytorch"), "inference_config": metadata.get("inference_config"),
            "input": {"field_names": [DEFAULT_FIELD]}}


def metadata_problems(metadata: Any, name: str) -> list[str]:
    """What the cluster would refuse in `<name>.metadata.json`, in its words where it has them, plus what esbundle
    needs to carry the package safely (a plain vocabulary file name, a task it knows)."""
    if not isinstance(metadata, Mapping):
        return ["must be a JSON object"]
    problems = []
    if metadata.get("packaged_model_id") != name:
        problems.append(f"Invalid package name: packaged_model_id is {metadata.get('packaged_model_id')!r}, the "
                        f"package is {name!r}")
    size = metadata.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        problems.append(f"Invalid package size: size is {size!r}, must be a number of bytes above zero")
    sha = metadata.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        problems.append(f"Invalid package sha: sha256 is {sha!r}, must be 64 characters")
    elif not re.fullmatch(r"[0-9a-f]{64}", sha):
        problems.append("sha256 must be 64 lower-case hex digits (the cluster compares it with its lower-case digest)")
    if "minimum_version" not in metadata or metadata["minimum_version"] is None:
        problems.append(f"Invalid model package configuration for [{name}], missing minimum_version property")
    elif parse_minimum_version(metadata["minimum_version"]) is None:
        problems.append(f"Invalid model package configuration for [{name}], failed to parse the minimum_version "
                        f"property ({metadata['minimum_version']!r})")
    problems += _vocabulary_file_problems(metadata.get("vocabulary_file"))
    if task_of(metadata) is None:
        problems.append("inference_config must hold exactly one task")
    else:
        problems += [p for p in config_problems(cluster_config(metadata), str(task_of(metadata)))
                     if "manifest says" not in p]
    return problems


def _vocabulary_file_problems(value: Any) -> list[str]:
    if not isinstance(value, str) or not value:
        return ["vocabulary_file must name the vocabulary file"]
    if not value.endswith(".json"):
        return [f"vocabulary_file {value!r}: unknown format vocabulary file format (the cluster reads .json only)"]
    if not _FILE_NAME.match(value) or ".." in value:
        return [f"vocabulary_file {value!r} must be a plain file name in the repository (letters, digits, '.', "
                "'_', '-')"]
    return []


def package_vocabulary_problems(vocabulary: Any, raw_size: int) -> list[str]:
    """The package loader's rules (ModelLoaderUtils.loadVocabulary): a JSON object of at most 20 MB whose
    optional `vocabulary` and `merges` are strings and `scores` doubles (an integer score fails its cast)."""
    if raw_size > MAX_PACKAGE_VOCABULARY_BYTES:
        return [f"{raw_size} bytes; the cluster reads at most {MAX_PACKAGE_VOCABULARY_BYTES}"]
    if not isinstance(vocabulary, Mapping):
        return ["must be a JSON object"]
    problems = []
    for key in ("vocabulary", "merges"):
        value = vocabulary.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"[{key}] must be a list of strings")
    scores = vocabulary.get("scores", [])
    if not isinstance(scores, list) or not all(isinstance(s, float) for s in scores):
        problems.append("[scores] must be a list of decimal numbers (the cluster casts each to Double)")
    if not vocabulary.get("vocabulary"):
        problems.append("[vocabulary] is empty: the model cannot tokenize")
    return problems


def definition_problems(metadata: Mapping[str, Any], size: int, sha256: str) -> list[str]:
    """The `.pt` must be exactly what the metadata says: both values named."""
    problems = []
    if metadata.get("size") != size:
        problems.append(f"Model size does not match, expected [{metadata.get('size')}] but got [{size}]")
    if metadata.get("sha256") != sha256:
        problems.append(f"Model sha256 checksums do not match, expected [{metadata.get('sha256')}] but got "
                        f"[{sha256}]")
    return problems
