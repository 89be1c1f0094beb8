"""The receipt of a load: one JSON line appended to the local audit log, and printed.

It says who loaded which bundle (by id and manifest sha256, signed by whom) into which cluster, what was sent,
skipped and retried, which overrides were used, and how it ended. It never holds a credential.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loader import __version__, settings
from loader.text import printable_json


def new_receipt(**fields: Any) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return {"time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "user": user,
            "host": socket.gethostname(), "esbundle": __version__, **fields}


def append(receipt: dict[str, Any], path: Path | None = None) -> Path:
    path = path or settings.audit_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Cluster names, model ids and error texts come from outside: printable, so reading the log cannot be fooled.
    line = json.dumps(printable_json(receipt), sort_keys=True, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
