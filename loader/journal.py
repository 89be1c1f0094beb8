"""A local record of the parts a cluster acknowledged, so a rerun after a crash does not send them again.

Elasticsearch cannot list the parts it holds, so the loader remembers. One file per (cluster, model, bundle),
one line per acknowledged part, flushed and fsynced as soon as the acknowledgement arrives. The record is a
hint, never proof: the final `fully_defined` check decides, and a record that disagrees with the cluster is
discarded.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from loader import settings


def journal_dir() -> Path:
    return settings.audit_log_path().parent / "uploads"


class Journal:
    def __init__(self, cluster_uuid: str, model_id: str, bundle_id: str, directory: Path | None = None) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{cluster_uuid}__{model_id}__{bundle_id}")
        self.path = (directory or journal_dir()) / f"{safe}.parts"
        self._lock = threading.Lock()

    def done(self) -> set[int]:
        try:
            text = self.path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            return set()
        # A torn last line (killed mid-write) is simply ignored.
        return {int(line) for line in text.splitlines() if line.isdigit()}

    def record(self, part: int) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, f"{part}\n".encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
