"""The commands that talk to a cluster: `load` and `status`. Connection options and credentials are shared.

Credentials: flag > environment (ES_URL, ES_USERNAME, ES_PASSWORD, ES_API_KEY) > prompt (password only).
Every secret is registered with the error boundary, which scrubs it from anything it prints.
"""
from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from loader import settings
from loader.cli import cli, trusted_key_option, trusted_keys_from
from loader.cluster import Cluster, Connection
from loader.deploy import StartOptions
from loader.errors import UsageError
from loader.load import LoadOptions, run_load
from loader.preflight import METADATA_KEY, Overrides


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--url", "urls", multiple=True, help="Elasticsearch URL; repeatable. Default: $ES_URL."),
        click.option("--cloud-id", help="Elastic Cloud id instead of --url."),
        click.option("-u", "--username", help="User for basic auth. Default: $ES_USERNAME."),
        click.option("-p", "--password", help="Password; prompted for when -u is given without it. "
                     "Default: $ES_PASSWORD."),
        click.option("--api-key", help="API key (the encoded form). Default: $ES_API_KEY."),
        click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), help="CA bundle (PEM) to trust."),
        click.option("--client-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (PEM)."),
        click.option("--client-key", type=click.Path(exists=True, dir_okay=False), help="Client key (PEM)."),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (prints a warning)."),
        click.option("--timeout", default=60.0, show_default=True, type=float, help="Seconds per request."),
    ]
    return functools.reduce(lambda cmd, opt: opt(cmd), reversed(options), command)


def build_connection(urls: tuple[str, ...], cloud_id: str | None, username: str | None, password: str | None,
                     api_key: str | None, ca_certs: str | None, client_cert: str | None, client_key: str | None,
                     insecure: bool, timeout: float, concurrency: int = 4) -> Connection:
    if urls and cloud_id:
        raise UsageError("give --url or --cloud-id, not both")
    if not urls and not cloud_id and settings.get(settings.ES_URL):
        urls = tuple(u.strip() for u in (settings.get(settings.ES_URL) or "").split(",") if u.strip())
    api_key = api_key or settings.get(settings.ES_API_KEY)
    username = username or (None if api_key else settings.get(settings.ES_USERNAME))
    if username and password is None:
        password = settings.get(settings.ES_PASSWORD)
        if password is None:
            if not sys.stdin or not sys.stdin.isatty():
                raise UsageError(f"-u {username} without a password: set {settings.ES_PASSWORD} or run in a terminal")
            password = click.prompt(f"Password for {username}", hide_input=True, err=True)
    for secret in (password, api_key, *(_url_userinfo(u) for u in urls)):
        settings.register_secret(secret)
    if insecure:
        click.echo("WARNING: --insecure: TLS certificates are NOT verified; anyone on the path can impersonate the "
                   "cluster", err=True)
    return Connection(urls=tuple(urls), cloud_id=cloud_id, username=username, password=password, api_key=api_key,
                      ca_certs=ca_certs, client_cert=client_cert, client_key=client_key, insecure=insecure,
                      timeout=timeout, concurrency=concurrency)


def _url_userinfo(url: str) -> str | None:
    """The credentials written into a URL, found even where a URL parser would give up (a `/` or `#` in the
    password), so they are scrubbed from anything printed."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[0] if "@" in rest else None


@cli.command()
@click.argument("bundle", nargs=-1, required=True, type=click.Path(path_type=Path))
@trusted_key_option
@connection_options
@click.option("--es-model-id", help="Model id in the cluster (default: the bundle's).")
@click.option("--replace", is_flag=True, help="Delete a model held under the id by another bundle, then load.")
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
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True, help="Parts in flight.")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON only.")
def load(bundle: tuple[Path, ...], trusted_keys: tuple[Path, ...], es_model_id: str | None, replace: bool,
         allow_downgrade: bool, force: bool, dry_run: bool, start_: bool, wait_for: str, allocations: int | None,
         threads: int | None, priority: str | None, smoke_test: bool | None, concurrency: int, as_json: bool,
         **conn: Any) -> None:
    """Verify BUNDLE offline, check the cluster, upload exactly the verified bytes, optionally deploy.

    BUNDLE is a bundle directory or all of its volumes (vol001, vol002, ...)."""
    if threads and threads & (threads - 1):
        raise UsageError(f"--threads {threads}: must be a power of 2")
    if priority == "low" and (allocations or 1) != 1:
        raise UsageError("--priority low needs --allocations 1")
    connection = build_connection(**conn, concurrency=concurrency)
    options = LoadOptions(
        bundle=list(bundle), trusted=trusted_keys_from(trusted_keys, required=True), connection=connection,
        model_id=es_model_id, overrides=Overrides(replace=replace, allow_downgrade=allow_downgrade, force=force),
        dry_run=dry_run, smoke_test=smoke_test, progress=False if as_json else None,
        start=StartOptions(wait_for=wait_for, allocations=allocations, threads=threads, priority=priority,
                           timeout=max(conn["timeout"], 30.0) * 5) if start_ else None)
    receipt = run_load(options, echo=(lambda line: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(receipt, sort_keys=True))
    elif dry_run:
        click.echo(f"DRY RUN  {receipt['plan']}. Nothing was written.")
    else:
        click.echo(f"LOADED   [{receipt['model_id']}] from bundle {receipt['bundle_id']} "
                   f"({receipt['outcome']}); receipt appended to {receipt['audit_log']}")


@cli.command()
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool, **conn: Any) -> None:
    """List the cluster's models that came from bundles: bundle, version, signer, defined, deployment."""
    cluster = Cluster(build_connection(**conn))
    models = cluster.call("list trained models", lambda c: c.ml.get_trained_models(model_id="*", size=10000))
    stats = cluster.call("read model stats", lambda c: c.ml.get_trained_models_stats(model_id="*", size=10000))
    states = {s["model_id"]: (s.get("deployment_stats") or {}).get("state") for s in stats["trained_model_stats"]}
    rows = []
    for config in models["trained_model_configs"]:
        meta = (config.get("metadata") or {}).get(METADATA_KEY)
        if not meta:
            continue
        model_id = config["model_id"]
        detail = cluster.call(f"read [{model_id}]", lambda c, m=model_id: c.ml.get_trained_models(
            model_id=m, include="definition_status"))["trained_model_configs"][0]
        rows.append({"model_id": model_id, "bundle_id": meta.get("bundle_id"),
                     "bundle_version": meta.get("bundle_version"), "signer_key_id": meta.get("signer_key_id"),
                     "fully_defined": detail.get("fully_defined"),
                     "deployment": states.get(model_id) or "not deployed"})
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    if not rows:
        click.echo("no model in this cluster came from an esbundle bundle")
        return
    click.echo(f"{'model id':<30} {'bundle':<38} {'ver':>3}  {'signer':<16} {'defined':<7}  deployment")
    for r in rows:
        signer = str(r["signer_key_id"])[:16]
        click.echo(f"{r['model_id']:<30} {r['bundle_id']:<38} {r['bundle_version']:>3}  {signer:<16} "
                   f"{'yes' if r['fully_defined'] else 'NO':<7}  {r['deployment']}")
