"""Options several commands share: the public keys to trust."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from loader import settings
from loader.bundle.trust import load_trusted_keys
from loader.errors import NoTrustedKeyError

trusted_key_option = click.option(
    "--trusted-key", "trusted_keys", multiple=True, type=click.Path(path_type=Path),
    help=f"Public key (or directory of keys) to trust; repeatable. Default: ${settings.TRUSTED_KEYS}.")


def trusted_keys_from(flag_values: tuple[Path, ...], *, required: bool) -> dict[str, Any]:
    paths = settings.trusted_key_paths(flag_values)
    if not paths:
        if required:
            raise NoTrustedKeyError("no trusted public key given; refusing to trust whatever key the bundle names")
        return {}
    return load_trusted_keys(paths)
