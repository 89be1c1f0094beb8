"""glibc keeps part-sized freed buffers once the loader asks it to (loader/allocation.py).

Measured as the kernel sees it, in minor page faults: parts read and turned into request bodies on a pool of
threads, handed over and freed elsewhere, a few at a time, as load's pipeline does. By default glibc gives each
freed buffer back and faults the next one in page by page; kept, the pages are faulted in once. Each case runs
in a fresh interpreter, since the setting is process-wide.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROUNDS = 200
PART = 1 << 20

_PIPELINE = f"""
import json, resource, sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from loader.allocation import keep_freed_buffers
from loader.cluster.upload import part_body

kept = keep_freed_buffers() if sys.argv[2] == "keep" else None

def prepare(i):
    with open(sys.argv[1], "rb", buffering=0) as handle:
        raw = handle.read({PART} + 1)
    return part_body(raw, {ROUNDS * PART}, {ROUNDS})

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with ThreadPoolExecutor(2) as pool:
    window = deque()
    for i in range({ROUNDS}):
        window.append(pool.submit(prepare, i))
        if len(window) >= 4:
            window.popleft().result()  # freed here, in another thread than the one that made it
    while window:
        window.popleft().result()
print(json.dumps({{"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""


def pipeline(part: Path, mode: str) -> dict[str, int | bool | None]:
    done = subprocess.run([sys.executable, "-c", _PIPELINE, str(part), mode], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def test_freed_part_buffers_are_kept_for_reuse_on_glibc(tmp_path: Path) -> None:
    part = tmp_path / "part"
    part.write_bytes(os.urandom(PART))
    default, kept = pipeline(part, "default"), pipeline(part, "keep")
    if platform.libc_ver()[0] != "glibc":
        assert kept["kept"] is False  # elsewhere it does nothing, and says so
        return
    assert kept["kept"] is True
    # By default about one part's pages (raw bytes, base64, body) are faulted in again for every part.
    assert default["faults"] > ROUNDS * PART // 4096, default
    assert kept["faults"] < default["faults"] // 10, (default, kept)
