"""The import of one of Elastic's packages: the cluster fetches it from its model repository, and the loader proves
the cluster then holds exactly the bundle's package.

`PUT _ml/trained_models/.<name>?wait_for_completion=true` with `{"input":{"field_names":["text_field"]}}` makes the
cluster read `<name>.metadata.json`, the vocabulary and `<name>.pt` from `xpack.ml.model_repository` and store the
definition in parts (TransportPutTrainedModelAction, TransportLoadTrainedModelPackage, ModelImporter); while it waits,
its answer carries the import's own error. A failed import may leave the config and some parts behind, so the failure
says what is left and how to recover. A successful one is confirmed: fully defined, and `model_package` shows the
bundle's sha256 and size (what the repository's metadata said; on the file route the cluster checked both over every
byte it read, on the HTTP route only the size).
"""
from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

from loader.bundle.verify import Verified
from loader.cluster.client import Cluster
from loader.cluster.package import HeldPackage
from loader.cluster.preflight import get_model
from loader.errors import ClusterError, IntegrityError
from loader.format.manifest import Manifest
from loader.format.package import DEFAULT_FIELD

IMPORT_TIMEOUT = 3600.0  # seconds for the whole import: Elastic's packages are 400+ MB, stored in 1 MiB parts
_ERRORS = tuple(range(400, 600))
PUT_FILES_HINT = ("put the bundle's files there (`esbundle repository install BUNDLE --to DIR` on every "
                  "master-eligible node, or `esbundle repository serve BUNDLE`), then run load again")
_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')  # RFC 7234 warn-code warn-agent "warn-text"


@dataclass(frozen=True)
class Imported:
    model_id: str
    held: HeldPackage
    seconds: float
    warnings: tuple[str, ...] = ()  # the PUT's Warning headers (e.g. the platform warning, when forced past it)

    @property
    def detail(self) -> str:
        return (f"[{self.model_id}] imported from {self.held.repository} in {self.seconds:.1f} s: fully defined, "
                f"sha256 {self.held.sha256} and {self.held.size} bytes as in the bundle "
                f"({self.held.checked_by_cluster})")


def recovery(model_id: str) -> str:
    return (f"then delete the model (DELETE _ml/trained_models/{model_id}) and run load again, or run load again with "
            "--replace, which deletes it first")


def cluster_words(exc: Any) -> str:
    """Elasticsearch's own words for a failed request: status, error type and reason, and each cause."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    if not isinstance(error, dict):
        return f"{exc.meta.status} {exc.message}"
    text = f"{exc.meta.status} {error.get('type')}: {error.get('reason')}"
    cause, depth = error.get("caused_by"), 0
    while isinstance(cause, dict) and depth < 4:
        text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        cause, depth = cause.get("caused_by"), depth + 1
    return text


def import_package(cluster: Cluster, verified: Verified, model_id: str, repository: str | None,
                   timeout: float = IMPORT_TIMEOUT) -> Imported:
    started = time.monotonic()
    response = _put(cluster, model_id, repository, timeout)
    held = confirm(cluster, verified.manifest, model_id)
    return Imported(model_id, held, time.monotonic() - started, _warnings(response))


def _put(cluster: Cluster, model_id: str, repository: str | None, timeout: float) -> Any:
    from elasticsearch import ApiError

    what = f"import [{model_id}] from the cluster's model repository"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the client turns Warning headers into Python warnings: read them below
            return cluster.call(what, lambda c: c.options(request_timeout=timeout).ml.put_trained_model(
                model_id=model_id, input={"field_names": [DEFAULT_FIELD]}, wait_for_completion=True),
                retry=False, ok_statuses=_ERRORS)
    except ApiError as exc:
        raise _failed(cluster, model_id, repository, exc) from None
    except ClusterError as exc:  # no answer in time: the import goes on in the cluster
        exc.add_context(next_step=f"the cluster may still be importing: once GET _ml/trained_models/{model_id}"
                                  "?include=definition_status says fully_defined, run load again")
        raise


def _failed(cluster: Cluster, model_id: str, repository: str | None, exc: Any) -> ClusterError:
    message = f"the cluster could not import [{model_id}] from its model repository: {cluster_words(exc)}"
    where = repository or "the model repository"
    if get_model(cluster, model_id) is None:
        reason = str(((exc.body or {}).get("error") or {}).get("reason", "")) if isinstance(exc.body, dict) else ""
        hints = {"Failed to find package": f"{where} holds no {model_id[1:]}.metadata.json: {PUT_FILES_HINT}",
                 "Failed to load package metadata": f"the master-eligible nodes could not read {where} (is "
                                                    f"`esbundle repository serve` running there?): {PUT_FILES_HINT}"}
        return ClusterError(message, outcome="nothing was created in the cluster",
                            hint=hints.get(reason, "fix what the cluster names, then run load again"))
    return ClusterError(message, outcome=f"[{model_id}] is left in the cluster, incomplete or wrong: do not use it",
                        hint=f"fix what the cluster names (the files at {where}), {recovery(model_id)}")


def confirm(cluster: Cluster, manifest: Manifest, model_id: str) -> HeldPackage:
    """The cluster holds exactly the bundle's package: fully defined, with the bundle's sha256 and size."""
    model = get_model(cluster, model_id)
    if model is None:
        raise ClusterError(f"[{model_id}] is not in the cluster after its import was acknowledged",
                           hint="run load again")
    held = HeldPackage.of(model)
    if not held.fully_defined:
        raise ClusterError(f"[{model_id}] is not fully defined after its import",
                           outcome=f"[{model_id}] is left in the cluster incomplete: do not use it",
                           hint=f"check the files at {held.repository}, {recovery(model_id)}")
    differences = held.differences(manifest)
    if differences:
        raise IntegrityError(f"the cluster imported [{model_id}], but not this bundle's package: "
                             + "; ".join(differences),
                             outcome=f"[{model_id}] stays in the cluster as imported: do not use it",
                             hint=f"the model repository ({held.repository}) holds other files under this name: put "
                                  "this bundle's files there (esbundle repository install BUNDLE --to DIR --replace, "
                                  f"or esbundle repository serve BUNDLE), {recovery(model_id)}")
    return held


def _warnings(response: Any) -> tuple[str, ...]:
    headers = getattr(getattr(response, "meta", None), "headers", None) or {}
    text = headers.get("warning") or headers.get("Warning") or ""
    return tuple(m.replace('\\"', '"') for m in _WARNING.findall(text))
