"""`esbundle repository install|serve`: Elastic's packaged models (ELSER, E5, Rerank) from verified bundles into a
cluster's model repository, as files on the master-eligible nodes or over HTTP."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from loader.bundle.verify import Verified
from loader.cli.options import trusted_key_option, trusted_keys_from
from loader.cli.output import emit, emit_json
from loader.errors import EsbundleError, UsageError
from loader.repository import install as installing
from loader.repository.bundles import catalogue, model_ids, verify_packages
from loader.repository.files import PackageFiles
from loader.repository.serve import WILDCARDS, serve
from loader.repository.setting import file_requirements, file_url, http_requirements, setting_line


def _verified(bundles: Sequence[Path], trusted_keys: tuple[Path, ...], *, quiet: bool, err: bool
              ) -> tuple[PackageFiles, ...]:
    def said(verified: Verified, source: str) -> None:
        m = verified.manifest
        if not quiet:
            emit(f"VERIFIED  {m.model_id} ({m.task_type}), bundle {m.bundle_id} version {m.bundle_version}, "
                 f"from {source}", err=err)

    return verify_packages(bundles, trusted_keys_from(trusted_keys, required=True), on_verified=said,
                           progress=False if quiet else None)


@contextmanager
def _failures(as_json: bool, key: str, outcome: str | None = None) -> Iterator[None]:
    """An error gets what did not happen, and with --json also a JSON answer on stdout (the boundary prints it)."""
    try:
        yield
    except EsbundleError as exc:
        exc.add_context(outcome=outcome)
        if as_json:
            emit_json({key: False, "exit_code": exc.exit_code, "error": exc.statement,
                       "problems": [str(p) for p in exc.problems]})
        raise


@click.group("repository")
def command() -> None:
    """Put Elastic's packaged models from signed bundles where a cluster's model repository
    (xpack.ml.model_repository) reads them: a directory on the master-eligible nodes (install) or HTTP (serve)."""


def _placed_line(placed: installing.Placed) -> str:
    label = {installing.WRITTEN: "wrote", installing.REPLACED: "replaced", installing.KEPT: "kept"}[placed.action]
    what = ": already there and identical, left as is" if placed.action == installing.KEPT else ""
    return f"{label:<9} {placed.name} ({placed.size} bytes, sha256 {placed.sha256}){what}"


def _report(found: Sequence[PackageFiles], directory: Path, placed: Sequence[installing.Placed], checking: bool,
            as_json: bool) -> None:
    directory, ids = installing.repository_dir(directory), model_ids(found)
    if as_json:
        emit_json({"checked" if checking else "installed": True, "directory": str(directory), "model_ids": ids,
                   "setting": setting_line(file_url(directory)),
                   "files": [{"name": p.name, "size": p.size, "sha256": p.sha256, "action": p.action}
                             for p in placed]})
        return
    written = sum(p.action in (installing.WRITTEN, installing.REPLACED) for p in placed)
    if checking:
        emit(f"CHECKED   {directory} holds {', '.join(ids)} exactly as signed")
    else:
        emit(f"INSTALLED {', '.join(ids)} in {directory}: {written} file(s) written and read back, "
             f"{len(placed) - written} already there and identical")
    emit("", *file_requirements(directory, ids))


@command.command("install")
@click.argument("bundles", metavar="BUNDLE...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "directory", required=True, type=click.Path(path_type=Path),
              help="The repository directory (created when missing); below each node's config directory.")
@trusted_key_option
@click.option("--replace", is_flag=True, help="Overwrite files of the same name that differ.")
@click.option("--check", "checking", is_flag=True,
              help="Compare the directory with the bundles (every file present, same size and sha256); write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def install_command(bundles: tuple[Path, ...], directory: Path, trusted_keys: tuple[Path, ...], replace: bool,
                    checking: bool, as_json: bool) -> None:
    """Write the files of verified package bundles into a model repository directory, under the names the cluster
    asks for, each through a temporary file, flushed, renamed and read back; print the setting for it.

    Files of other models are left alone. A file of the same name that is identical is kept; one that differs is
    refused (nothing written) unless --replace.

    \b
    BUNDLE... is one or more package bundles (`esbundle export --elastic-model`),
    each a bundle directory or the directory holding its volumes; volume
    directories given one by one (OUT/vol001 OUT/vol002) are put together by
    the bundle they belong to. Every bundle is fully verified first."""
    if checking and replace:
        raise UsageError("--check writes nothing; --replace does not go with it")
    key = "checked" if checking else "installed"
    with _failures(as_json, key, outcome=None if checking else "nothing was written"):
        found = _verified(bundles, trusted_keys, quiet=as_json, err=False)
    with _failures(as_json, key):
        if checking:
            placed = installing.check(found, directory)
        else:
            placed = installing.install(found, directory, replace=replace,
                                        on_placed=None if as_json else lambda p: emit(_placed_line(p)))
    if checking and not as_json:
        for p in placed:
            emit(f"ok        {p.name} ({p.size} bytes, sha256 {p.sha256})")
    _report(found, directory, placed, checking, as_json)


@command.command("serve")
@click.argument("bundles", metavar="BUNDLE...", nargs=-1, required=True, type=click.Path(path_type=Path))
@trusted_key_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 takes a free one.")
def serve_command(bundles: tuple[Path, ...], trusted_keys: tuple[Path, ...], host: str, port: int) -> None:
    """Serve the files of verified package bundles over HTTP as the cluster's model repository, until SIGINT or
    SIGTERM; every byte is re-checked against the signed manifest as it is sent.

    Prints `serving http://HOST:PORT/` first, then the setting line; one line per request on stderr. Read-only:
    GET and HEAD of the packages' files only (single ranges honoured), no listing, no redirect.

    \b
    BUNDLE... is one or more package bundles (`esbundle export --elastic-model`),
    each a bundle directory or the directory holding its volumes; volume
    directories given one by one (OUT/vol001 OUT/vol002) are put together by
    the bundle they belong to. Every bundle is fully verified first."""
    try:
        found = _verified(bundles, trusted_keys, quiet=False, err=True)
    except EsbundleError as exc:
        raise exc.add_context(outcome="nothing is served") from None
    ids = model_ids(found)

    def ready(url: str) -> None:
        emit(f"serving {url}")
        for package in found:
            emit(f"model     {package.model_id}: " + ", ".join(f.name for f in (
                package.metadata, package.vocabulary, package.model)))
        emit(*http_requirements(url, ids, wildcard=host in WILDCARDS))

    stopped = serve(catalogue(found), host, port, on_ready=ready, log=lambda line: emit(line, err=True))
    emit(f"stopped ({stopped})", err=True)
