"""What an export is asked to do (`ExportOptions`) and what it did (`ExportResult`).

Plain data and the pure checks on it, nothing heavy: this module is imported by the CLI on the offline install,
where torch is absent, so it must import nothing heavy (the standard library, `loader`, and light `bundler` modules).
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bundler.options import BundleOptions, check_bundle_options
from bundler.stages import StageTime
from loader.errors import UsageError
from loader.format.model_config import MAX_MODEL_ID_LEN, TASK_TYPES

AUTO = "auto"
TASK_CHOICES = (*TASK_TYPES, AUTO)
# How a plain transformers encoder's token states become one text_embedding vector (pooling.EmbeddingPooling).
POOLING_CHOICES = ("mean", "cls", "max")
HUB_ID = re.compile(r"[\w.\-]+(/[\w.\-]+)?")  # ORG/NAME, or a bare NAME


@dataclass(frozen=True, kw_only=True)
class ExportOptions(BundleOptions):
    """One export. Exactly one of `hub_model_id` and `model_dir` names the source; `hub_model_id` may also be a local
    directory, as with eland (`check_options` turns it into `model_dir`)."""

    task_type: str = AUTO
    hub_model_id: str | None = None
    hub_access_token: str | None = field(default=None, repr=False)  # a secret: never printed with the options
    revision: str | None = None
    model_dir: Path | None = None
    quantize: bool = False
    max_model_input_length: int | None = None
    ingest_prefix: str | None = None
    search_prefix: str | None = None
    allow_newer_torch: bool = False
    pooling: str | None = None  # text_embedding of a plain transformers model only; None: not given (mean)
    normalize: bool | None = None  # likewise; None: not given (no normalisation)
    allow_accent_difference: bool = False


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    """The outcome, as printed by `esbundle export` (`to_json` is the `--json` document)."""

    out: Path
    es_model_id: str
    task_type: str
    tokenization: str
    bundle_id: str
    definition_bytes: int
    part_count: int
    source: dict[str, Any]
    trace_check: dict[str, Any]
    compatibility: dict[str, Any]
    quantized: bool
    pooling: dict[str, Any] | None = None  # text_embedding of a plain transformers model: how it was pooled
    stages: tuple[StageTime, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["out"] = str(self.out)
        doc["stages"] = {s.name: round(s.seconds, 3) for s in self.stages}
        return doc


def normalise_task_type(text: str) -> str:
    """Accept `text-embedding` as well as `text_embedding` (the hub's pipeline tags use dashes)."""
    task = text.strip().lower().replace("-", "_")
    if task == "zero_shot":
        task = "zero_shot_classification"
    if task not in TASK_CHOICES:
        raise UsageError(f"--task-type {text!r} is not a known task type",
                         hint="use one of: " + ", ".join(TASK_CHOICES))
    return task


_INVALID_ID_CHARS = re.compile(r"[^a-z0-9_\-.]")


def derive_es_model_id(source_name: str) -> str:
    """An Elasticsearch model id from a hub id or a directory name, the way eland derives it:
    lowercase, `/` and whitespace become `__`, the last 64 characters kept (the model's own name is at the end).
    Characters Elasticsearch refuses become `_`, and the ends are trimmed to alphanumerics (an id starting with
    `.` would pass for one of Elastic's packaged models)."""
    text = re.sub(r"[\s\\/]", "__", source_name.strip()).lower()
    text = _INVALID_ID_CHARS.sub("_", text)[-MAX_MODEL_ID_LEN:]
    text = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", text)
    return text or "model"


def hub_model_id_directory(text: str) -> Path | None:
    """The local directory a --hub-model-id names, if it names one. eland hands --hub-model-id to transformers'
    `from_pretrained`, which loads an existing directory and asks the hub only otherwise: so an existing directory
    wins, even one named like ORG/NAME in the working directory."""
    path = os.path.expanduser(text)
    return Path(path) if os.path.isdir(path) else None


def _hub_model_id_as_directory(options: ExportOptions, directory: Path) -> ExportOptions:
    """--hub-model-id DIR means --model-dir DIR, except for the default model id: eland derives it from the text as
    given (`/data/models/e5` -> `data__models__e5`), where --model-dir uses the folder's name (`e5`)."""
    text = options.hub_model_id or ""
    if options.revision:
        raise UsageError(f"--revision applies to a hub repository, and --hub-model-id {text} is a local directory")
    return replace(options, hub_model_id=None, model_dir=directory,
                   es_model_id=options.es_model_id or derive_es_model_id(text))


def check_options(options: ExportOptions) -> ExportOptions:
    """Refuse contradictory or malformed options before anything is loaded; return them with the task normalised
    and a --hub-model-id that names a local directory turned into `model_dir`."""
    if (options.hub_model_id is None) == (options.model_dir is None):
        raise UsageError("give exactly one source: --hub-model-id ID or --model-dir DIR")
    if options.hub_model_id is not None:
        directory = hub_model_id_directory(options.hub_model_id)
        if directory is not None:
            options = _hub_model_id_as_directory(options, directory)
        elif not HUB_ID.fullmatch(options.hub_model_id):
            raise UsageError(f"--hub-model-id {options.hub_model_id!r} is neither a hub repository id (ORG/NAME) "
                             "nor an existing directory",
                             hint="for a local model folder give the path of an existing directory")
    if options.revision and not options.hub_model_id:
        raise UsageError("--revision applies to --hub-model-id only")
    if options.max_model_input_length is not None and options.max_model_input_length < 2:
        raise UsageError("--max-model-input-length must be at least 2 tokens")
    if options.pooling is not None and options.pooling not in POOLING_CHOICES:
        raise UsageError(f"--pooling {options.pooling!r} is not a pooling", hint="use one of: "
                         + ", ".join(POOLING_CHOICES))
    check_bundle_options(options)
    return replace(options, task_type=normalise_task_type(options.task_type))
