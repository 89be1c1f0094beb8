"""The stand-in's persistent store: model configs, vocabularies, definition parts, deployments.

Layout under `--data-dir` (plain files, each written to a temporary name and renamed, so a killed
stand-in never leaves a half-written record; `cluster.json` beside them is cluster.py's):

    models/<id>/config.json           the stored config
    models/<id>/vocabulary.json       the vocabulary document
    models/<id>/parts/<n>.bin         the raw (decoded) bytes of part n
    models/<id>/parts/<n>.json        its lengths; written after the .bin, so it marks completion
    models/<id>/attempts.log          one line per part upload attempt: `<part> <outcome>`
    deployments/<deployment_id>.json  started deployments (restored as started after a restart)
    model_aliases.json                model aliases (aliases.py), `{"<alias>": "<model_id>"}`

The built-in `lang_ident_model_1` (builtin.py) is part of every store: found by id, listed by `_all`,
`*` and wildcards, never written to disk.

Consistency of the parts is computed the way Elasticsearch computes it, only when asked (definition
status, `_start`): nothing is checked across parts at upload time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import errors
from .builtin import LANG_IDENT_ID, builtin_config


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, sort_keys=False).encode("utf-8"))


@dataclass(frozen=True)
class Part:
    number: int
    definition_length: int
    total_definition_length: int
    total_parts: int


@dataclass
class Model:
    model_id: str
    directory: Path
    config: dict[str, Any]
    has_vocabulary: bool = False
    parts: dict[int, Part] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    builtin: bool = False  # shipped with the cluster (builtin.py): nothing of it is on disk

    def vocabulary(self) -> dict[str, Any]:
        return json.loads((self.directory / "vocabulary.json").read_text(encoding="utf-8"))

    def part_bytes(self, number: int) -> bytes:
        return (self.directory / "parts" / f"{number}.bin").read_bytes()


class Store:
    """Thread-safe access to the models and deployments persisted under one data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models_dir = root / "models"
        self._deployments_dir = root / "deployments"
        self._models_dir.mkdir(parents=True, exist_ok=True)
        self._deployments_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._models: dict[str, Model] = {}
        self.builtin = Model(LANG_IDENT_ID, root / ".builtin", builtin_config(LANG_IDENT_ID) or {}, builtin=True)
        self._load()

    def _load(self) -> None:
        for directory in sorted(self._models_dir.iterdir()):
            config_file = directory / "config.json"
            if directory.name.startswith(".") or not config_file.is_file():
                continue
            model = Model(directory.name, directory, json.loads(config_file.read_text(encoding="utf-8")))
            model.has_vocabulary = (directory / "vocabulary.json").is_file()
            parts_dir = directory / "parts"
            if parts_dir.is_dir():
                for meta in parts_dir.glob("*.json"):
                    part = Part(**json.loads(meta.read_text(encoding="utf-8")))
                    model.parts[part.number] = part
            self._models[model.model_id] = model

    # --- models -------------------------------------------------------------------------------

    def get(self, model_id: str) -> Model | None:
        if model_id == self.builtin.model_id:
            return self.builtin
        with self._lock:
            return self._models.get(model_id)

    def require(self, model_id: str) -> Model:
        model = self.get(model_id)
        if model is None:
            raise errors.model_not_found(model_id)
        return model

    def known(self) -> dict[str, Model]:
        """Every model the cluster has, the built-in one included, by id in id order."""
        with self._lock:
            models = {**self._models, self.builtin.model_id: self.builtin}
        return dict(sorted(models.items()))

    def resolve(self, expression: str, allow_no_match: bool = True, aliases: Mapping[str, str] | None = None,
                matched_elsewhere: Iterable[str] = (), tags: Iterable[str] = (),
                missing: Callable[[list[str]], errors.EsError] | None = None) -> list[Model]:
        """TrainedModelProvider.expandIds: comma-separated ids, aliases and wildcards, `_all` or `*`.

        Only models carrying every one of `tags` take part (the search's term filters; the built-in model too,
        by its own tags). An explicit id must match a model, an alias of a matched model, or `matched_elsewhere`
        (deployment ids, for `_stats`); a wildcard matching nothing is refused only with `allow_no_match=false`.
        `missing` builds the refusal from the unmatched tokens, in request order (default: the stand-in's
        historical GET text, see README).
        """
        aliases = aliases or {}
        wanted = set(tags)
        known = {n: m for n, m in self.known().items() if wanted <= set(m.config.get("tags") or [])}
        tokens = [t.strip() for t in expression.split(",") if t.strip()]
        if not tokens or tokens in (["_all"], ["*"]):
            return list(known.values())
        found: dict[str, Model] = {}
        for token in tokens:
            if "*" in token:
                names = [n for n in known if simple_match(token, n)]
                names += [m for a, m in aliases.items() if simple_match(token, a) and m in known]
            else:
                names = [n for n in (token, aliases.get(token)) if n in known]
            found.update((n, known[n]) for n in names)
        matched = set(found) | {a for a, m in aliases.items() if m in found} | set(matched_elsewhere)
        unmatched = [t for t in tokens if ("*" not in t and t not in matched)
                     or ("*" in t and not allow_no_match and not any(simple_match(t, n) for n in matched))]
        if unmatched:
            raise (missing or _missing_models)(unmatched)
        return sorted(found.values(), key=lambda m: m.model_id)

    def create(self, model_id: str, config: dict[str, Any]) -> Model:
        with self._lock:
            if model_id in self._models or model_id == self.builtin.model_id:
                raise errors.already_exists(f"Trained machine learning model [{model_id}] already exists")
            directory = self._models_dir / model_id
            if directory.exists():
                # A leftover without config.json (crash during creation): start afresh.
                shutil.rmtree(directory)
            write_json(directory / "config.json", config)
            model = Model(model_id, directory, config)
            self._models[model_id] = model
            return model

    def update_config(self, model: Model, config: dict[str, Any]) -> None:
        with model.lock:
            write_json(model.directory / "config.json", config)
            model.config = config

    def delete(self, model_id: str) -> None:
        with self._lock:
            model = self._models.pop(model_id, None)
        if model is None:
            raise errors.model_not_found(model_id)
        # Rename first: the model vanishes atomically even if the removal below is interrupted.
        tomb = self._models_dir / f".deleted-{model_id}-{uuid.uuid4().hex}"
        os.replace(model.directory, tomb)
        shutil.rmtree(tomb, ignore_errors=True)

    # --- vocabulary and parts -----------------------------------------------------------------

    def put_vocabulary(self, model: Model, vocabulary: dict[str, Any], overwrite: bool = False) -> None:
        """`overwrite`: the package importer's allowOverwriting."""
        with model.lock:
            if model.has_vocabulary and not overwrite:
                # Text not confirmed from Elasticsearch's source (see README): type and status are.
                raise errors.already_exists(
                    f"Trained machine learning model [{model.model_id}] vocabulary already exists"
                )
            write_json(model.directory / "vocabulary.json", vocabulary)
            model.has_vocabulary = True

    def put_part(self, model: Model, number: int, data: bytes, total_length: int, total_parts: int,
                 overwrite: bool = False) -> None:
        """`overwrite`: the package importer's allowOverwriting (a part stored again replaces the old one)."""
        with model.lock:
            if (number in model.parts and not overwrite) or number in model.in_flight:
                raise errors.already_exists(
                    f"Trained machine learning model chunked doc [{model.model_id}][{number}] already exists"
                )
            model.in_flight.add(number)
        try:
            parts_dir = model.directory / "parts"
            write_atomic(parts_dir / f"{number}.bin", data)
            part = Part(number, len(data), total_length, total_parts)
            write_json(parts_dir / f"{number}.json", part.__dict__)
            with model.lock:
                model.parts[number] = part
        finally:
            with model.lock:
                model.in_flight.discard(number)

    def record_attempt(self, model_id: str, number: int, outcome: str) -> None:
        """Append one upload outcome (`stored`, `exists`, `injected-503`, `closed`, ...)."""
        model = self.get(model_id)
        if model is None or model.builtin:
            return
        with model.lock, open(model.directory / "attempts.log", "a", encoding="utf-8") as log:
            log.write(f"{number} {outcome}\n")

    def attempt_stats(self, model: Model) -> dict[str, Any]:
        log = model.directory / "attempts.log"
        lines = log.read_text(encoding="utf-8").split() if log.is_file() else []
        pairs = list(zip(lines[0::2], lines[1::2], strict=True))
        attempts = Counter(p for p, _ in pairs)
        stored = Counter(p for p, o in pairs if o == "stored")
        order = sorted(attempts, key=int)
        return {
            "parts_stored": len(model.parts),
            "put_attempts": {p: attempts[p] for p in order},
            "stored": {p: stored[p] for p in order if stored[p]},
            "refused": {p: attempts[p] - stored[p] for p in order if attempts[p] - stored[p]},
            "outcomes": {p: [o for q, o in pairs if q == p] for p in order},
            "stored_order": [int(p) for p, o in pairs if o == "stored"],  # arrival order of the stored parts
        }

    # --- the definition, as Elasticsearch checks it -------------------------------------------

    def check_definition(self, model: Model) -> int:
        """TransportStartTrainedModelDeploymentAction's part check; returns the total length."""
        with model.lock:
            parts = [model.parts[n] for n in sorted(model.parts)]
        if not parts:
            raise errors.not_found(f"Could not find trained model definition [{model.model_id}]")
        first = parts[0]
        for part in parts:
            if part.total_definition_length != first.total_definition_length:
                raise errors.bad_request(
                    f"[{model.model_id}] [total_definition_length] must be the same in all model definition "
                    f"parts. The value [{part.total_definition_length}] in model definition part "
                    f"[{part.number}] does not match the value [{first.total_definition_length}] in part "
                    f"[{first.number}]. Unable to deploy model, please delete and recreate the model definition"
                )
        if sum(p.definition_length for p in parts) != first.total_definition_length:
            raise errors.bad_request(
                f"Model definition truncated. Unable to deserialize trained model definition [{model.model_id}]"
            )
        return first.total_definition_length

    def fully_defined(self, model: Model) -> bool:
        try:
            self.check_definition(model)
        except errors.EsError:
            return False
        return True

    def definition(self, model: Model) -> bytes:
        with model.lock:
            numbers = sorted(model.parts)
        return b"".join(model.part_bytes(n) for n in numbers)

    # --- deployments ----------------------------------------------------------------------------

    def save_deployment(self, deployment: dict[str, Any]) -> None:
        write_json(self._deployments_dir / f"{deployment['deployment_id']}.json", deployment)

    def remove_deployment(self, deployment_id: str) -> None:
        (self._deployments_dir / f"{deployment_id}.json").unlink(missing_ok=True)

    def saved_deployments(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self._deployments_dir.glob("*.json"))]


def _missing_models(unmatched: list[str]) -> errors.EsError:
    if len(unmatched) == 1:
        return errors.model_not_found(unmatched[0])
    return errors.not_found(f"Could not find trained models [{', '.join(unmatched)}]")


def expand_ids_missing(unmatched: list[str]) -> errors.EsError:
    """TrainedModelProvider.expandIds' refusal: ExceptionsHelper.missingTrainedModel with
    ExpandedIdsMatcher.unmatchedIdsString (the unmatched tokens joined by `,`)."""
    return errors.not_found(f"No known trained model with model_id [{','.join(unmatched)}]")


def simple_match(pattern: str, value: str) -> bool:
    """Regex.simpleMatch: `*` matches any run of characters; nothing else is special."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value, re.DOTALL) is not None
