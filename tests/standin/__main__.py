"""Command line of the stand-in: `python -m tests.standin --port PORT --data-dir DIR ...`.

Owns argument parsing, the single `ready <url>` line on stdout once the socket listens, and a
clean stop on SIGTERM or SIGINT (exit status 0). `scripts/es-standin` is the launcher.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .faults import PlanError
from .server import App, BootstrapFailure, Options, StandInServer


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="es-standin", description="Local Elasticsearch trained-model API stand-in")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--data-dir", type=Path, required=True, help="where models and parts are persisted")
    parser.add_argument("--es-version", default="9.2.0", help="Elasticsearch release to emulate (default 9.2.0)")
    parser.add_argument("--license", choices=("trial", "platinum", "enterprise", "basic"), default="trial")
    parser.add_argument("--user", action="append", default=[],
                        help="NAME:PASSWORD[:PRIVILEGE,...] accepted with Authorization: Basic; repeatable. Without "
                             "privileges a superuser; with them, one role holding those cluster privileges")
    parser.add_argument("--api-key", help="encoded API key (base64 of id:secret), or id:secret")
    parser.add_argument("--tls-dir", type=Path, help="serve HTTPS; the CA certificate is written to DIR/ca.crt")
    parser.add_argument("--max-content-length", type=int, default=100 * 1024 * 1024,
                        help="request body limit in bytes (http.max_content_length; default 100 MB)")
    parser.add_argument("--fail", help="fault plan, e.g. part-status=503@0.2,seed=7 (see README)")
    parser.add_argument("--quiet", action="store_true", help="no access log on stderr")
    parser.add_argument("--model-repository", help="xpack.ml.model_repository: file://, http:// or https:// "
                                                   "(default https://ml-models.elastic.co, never contacted)")
    parser.add_argument("--config-dir", type=Path, help="the node's config directory (default DATA_DIR/config)")
    parser.add_argument("--ml-platform", default="linux-x86_64", help="the ML node's <os>-<arch>")
    args = parser.parse_args(argv)
    if any(":" not in user for user in args.user):
        parser.error("--user takes NAME:PASSWORD[:PRIVILEGE,...]")
    return Options(port=args.port, data_dir=args.data_dir, es_version=args.es_version, license=args.license,
                   users=tuple(args.user), api_key=args.api_key, tls_dir=args.tls_dir,
                   max_content_length=args.max_content_length, fail=args.fail, quiet=args.quiet,
                   model_repository=args.model_repository, config_dir=args.config_dir, ml_platform=args.ml_platform)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        app = App(options)
    except BootstrapFailure as exc:
        # BootstrapChecks: the node logs every failed check and exits with ExitCodes.CONFIG (78).
        print("ERROR: [1] bootstrap checks failed. You must address the points described in the following [1] "
              "lines before starting Elasticsearch.", file=sys.stderr)
        print(f"bootstrap check failure [1] of [1]: {exc}", file=sys.stderr)
        return 78
    except (PlanError, ValueError) as exc:
        print(f"es-standin: {exc}", file=sys.stderr)
        return 2
    try:
        import torch

        # The machine is shared: one intra-op thread keeps a test's inference from starving others.
        torch.set_num_threads(1)
    except ImportError:
        pass
    server = StandInServer(app)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ready {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
