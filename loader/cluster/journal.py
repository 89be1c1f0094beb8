"""A local record of the parts a cluster acknowledged, so a rerun after a crash does not send them again.

Elasticsearch cannot list the parts it holds, so the loader remembers. One file per (cluster, model, bundle),
one line per acknowledged part, written with one O_APPEND write as soon as the acknowledgement arrives (a killed
loader loses nothing: the kernel holds the write), and fsynced every few parts and at the end (a power cut may
lose the last few lines; those parts are offered again and the cluster answers "already exists"). The record is
a hint, never proof: the final `fully_defined` check decides, and a record that disagrees with the cluster is
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


SYNC_EVERY = 32


class Journal:
    def __init__(self, cluster_uuid: str, model_id: str, bundle_id: str, directory: Path | None = None) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{cluster_uuid}__{model_id}__{bundle_id}")
        self.path = (directory or journal_dir()) / f"{safe}.parts"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._unsynced = 0

    def done(self) -> set[int]:
        try:
            text = self.path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            return set()
        # A torn last line (killed mid-write) is simply ignored.
        return {int(line) for line in text.splitlines() if line.isdigit()}

    def record(self, part: int) -> None:
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fd = self._fd
            self._unsynced += 1
            sync = self._unsynced >= SYNC_EVERY
            if sync:
                self._unsynced = 0
        os.write(fd, f"{part}\n".encode("ascii"))  # one small O_APPEND write: atomic, no lock needed
        if sync:
            os.fsync(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def forget(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
