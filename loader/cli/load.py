"""`esbundle load`: verify, check the cluster, upload, optionally deploy and prove; print each step as it passes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from loader.cli.connection import build_connection, connection_options
from loader.cli.eland import OfflineCommand
from loader.cli.options import trusted_key_option, trusted_keys_from
from loader.cli.output import emit, emit_json
from loader.cluster.deploy import StartOptions
from loader.cluster.endpoints import EndpointOptions
from loader.cluster.load import LoadEvent, LoadOptions, LoadResult, Noted, Passed, run_load
from loader.cluster.preflight import Overrides
from loader.cluster.privileges import LoadNeeds, load_role
from loader.cluster.smoke import SampleOutcome
from loader.errors import UsageError


def event_line(event: LoadEvent) -> str:
    if isinstance(event, Passed):
        return f"ok    {event.stage:<8} {event.name:<10} {event.detail}"
    if isinstance(event, Noted):
        return f"note  {event.text}"
    assert isinstance(event, SampleOutcome)
    return f"{'ok' if event.ok else 'FAIL':<5} smoke    {event.text[:40]!r:<44} {event.detail}"


def result_line(result: LoadResult) -> str:
    if result.outcome == "dry-run":
        return f"DRY RUN  {result.plan.text}. Nothing was written."
    return (f"LOADED   [{result.model_id}] from bundle {result.bundle_id} ({result.outcome}); "
            f"receipt appended to {result.audit_log}")


def _start_options(start: bool, wait_for: str, allocations: int | None, threads: int | None, priority: str | None,
                   timeout: float) -> StartOptions | None:
    if threads and threads & (threads - 1):
        raise UsageError(f"--threads {threads}: must be a power of 2")
    if priority == "low" and (allocations or 1) != 1:
        raise UsageError("--priority low needs --allocations 1")
    if not start:
        return None
    return StartOptions(wait_for=wait_for, allocations=allocations, threads=threads, priority=priority,
                        timeout=max(timeout, 30.0) * 5)


def _endpoint_options(inference_id: str | None, adaptive: str | None) -> EndpointOptions | None:
    if adaptive and not inference_id:
        raise UsageError("--adaptive-allocations applies to the endpoint's deployment: give --inference-id too")
    if not inference_id:
        return None
    if adaptive is None:
        return EndpointOptions(inference_id)
    low, sep, high = adaptive.partition(":")
    if not (sep and low.isdigit() and high.isdigit()):
        raise UsageError(f"--adaptive-allocations {adaptive}: expected MIN:MAX, two whole numbers (e.g. 0:4)")
    return EndpointOptions(inference_id, (int(low), int(high)))


@click.command("load", cls=OfflineCommand)
@click.argument("bundle", nargs=-1, type=click.Path(path_type=Path))  # required, but not with --print-role
@trusted_key_option
@connection_options
@click.option("--es-model-id", help="Model id in the cluster (default: the bundle's).")
@click.option("--replace", "--clear-previous", "replace", is_flag=True,
              help="Delete a model held under the id by another bundle, then load (--clear-previous: eland's name).")
@click.option("--allow-downgrade", is_flag=True, help="Allow replacing a newer bundle_version (recorded).")
@click.option("--force", is_flag=True, help="Load although preflight says the cluster cannot run it (recorded).")
@click.option("--dry-run", is_flag=True, help="Verify and preflight, print the plan, write nothing.")
@click.option("--start", "start_", is_flag=True, help="Start the deployment after the upload.")
@click.option("--wait-for", type=click.Choice(["started", "fully_allocated"]), default="started", show_default=True)
@click.option("--allocations", type=click.IntRange(min=1), help="number_of_allocations")
@click.option("--threads", type=click.IntRange(min=1, max=32), help="threads_per_allocation (a power of 2)")
@click.option("--priority", type=click.Choice(["normal", "low"]))
@click.option("--smoke-test/--no-smoke-test", default=None, help="Compare _infer answers with the recorded samples "
              "(default: on with --start).")
@click.option("--inference-id", help="Create an inference endpoint of this id over the model (text_embedding, "
              "text_expansion as sparse_embedding, text_similarity as rerank); it starts the deployment.")
@click.option("--adaptive-allocations", metavar="MIN:MAX", help="The endpoint's deployment scales between MIN and "
              "MAX allocations (with --inference-id; 8.15+).")
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True, help="Parts in flight.")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON only.")
@click.option("--print-role", is_flag=True, help="Print the role this load needs with these flags (the body of PUT "
              "_security/role/NAME) and exit; connects to nothing, BUNDLE may be left out.")
def command(bundle: tuple[Path, ...], trusted_keys: tuple[Path, ...], es_model_id: str | None, replace: bool,
            allow_downgrade: bool, force: bool, dry_run: bool, start_: bool, wait_for: str, allocations: int | None,
            threads: int | None, priority: str | None, smoke_test: bool | None, inference_id: str | None,
            adaptive_allocations: str | None, concurrency: int, as_json: bool, print_role: bool, **conn: Any) -> None:
    """Verify BUNDLE offline, check the cluster, upload exactly the verified bytes, optionally deploy.

    BUNDLE is a bundle directory or all of its volumes (vol001, vol002, ...)."""
    if print_role:  # the same role for every bundle (loader/cluster/privileges.py)
        role, notes = load_role(LoadNeeds(start=start_ or inference_id is not None, endpoint=inference_id is not None,
                                          replace=replace, smoke=smoke_test is not False, dry_run=dry_run))
        emit_json(role, indent=2)
        emit(*(f"note  {note}" for note in notes), err=True)
        return
    if not bundle:
        raise click.MissingParameter(param_type="argument", param_hint="'BUNDLE...'")
    endpoint = _endpoint_options(inference_id, adaptive_allocations)
    start = _start_options(start_ or endpoint is not None, wait_for, allocations, threads, priority, conn["timeout"])
    connection = build_connection(**conn, concurrency=concurrency)
    options = LoadOptions(
        bundle=list(bundle), trusted=trusted_keys_from(trusted_keys, required=True), connection=connection,
        model_id=es_model_id,
        overrides=Overrides(replace=replace, allow_downgrade=allow_downgrade, force=force),
        dry_run=dry_run, smoke_test=smoke_test, progress=False if as_json else None, start=start, endpoint=endpoint)
    result = run_load(options, on_event=(lambda event: None) if as_json else (lambda e: emit(event_line(e))))
    if as_json:
        emit_json(dict(result.receipt), sort_keys=True)
    else:
        emit(result_line(result))
