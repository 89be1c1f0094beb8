"""What every command that writes a bundle is asked (`BundleOptions`), and the checks on it, shared by `export`
and `pack` so that both refuse the same things with the same words, before anything is loaded or written.

Plain data and checks that need nothing heavy: imported by the command line on the offline install, where torch is
absent.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bundler.writer.travel import TravelOptions
from loader.errors import UsageError
from loader.format import layout
from loader.format.model_config import model_id_problem

DEFAULT_EXPIRES_IN_DAYS = 365
MAX_EXPIRES_IN_DAYS = 36_500  # a century; beyond it dates overflow and expiry means nothing
NO_EXPIRY = ("0", "never")


@dataclass(frozen=True, kw_only=True)
class BundleOptions:
    signing_key: Path
    out: Path
    es_model_id: str | None = None
    bundle_version: int = 1
    expires_in_days: int | None = DEFAULT_EXPIRES_IN_DAYS  # None: never expires
    part_size: int = layout.DEFAULT_PART_SIZE
    target_es_version: str | None = None
    allow_unsupported_ops: bool = False
    travel: TravelOptions = field(default_factory=TravelOptions)


def parse_expires(text: str) -> int | None:
    """`--expires-in` as written: a number of days, or 0 / never for no expiry."""
    if text.strip().lower() in NO_EXPIRY:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--expires-in: {text!r} is not a number of days (or 0 / never)") from None


def check_bundle_options(options: BundleOptions) -> None:
    """Refuse, before anything is loaded, what the writer or the cluster would refuse later."""
    check_identity(options.es_model_id, options.bundle_version, options.part_size)
    if options.expires_in_days is not None and not 1 <= options.expires_in_days <= MAX_EXPIRES_IN_DAYS:
        raise UsageError(f"--expires-in must be 1..{MAX_EXPIRES_IN_DAYS} days (or 0 on the command line for no "
                         "expiry)")
    parent = options.out.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--out {options.out}: {parent} is a file, not a directory")
    refuse_existing(options.out)


def check_identity(model_id: str | None, bundle_version: int, part_size: int) -> None:
    """The model id, bundle version and part size the bundle will carry (a model id of None: not known yet)."""
    why = model_id_problem(model_id) if model_id is not None else None
    if why:
        raise UsageError(f"--es-model-id: {why}")
    if bundle_version < 1:
        raise UsageError("--bundle-version must be at least 1")
    if not layout.MIN_PART_SIZE <= part_size <= layout.MAX_PART_SIZE:
        raise UsageError(f"--part-size {part_size} is outside {layout.MIN_PART_SIZE}..{layout.MAX_PART_SIZE} bytes")


def refuse_existing(out: Path) -> None:
    if os.path.lexists(out):
        raise UsageError(f"{out}: already exists; refusing to overwrite", hint="choose a new --out directory")
