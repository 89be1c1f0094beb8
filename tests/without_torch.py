"""Run the real `esbundle` command line in a fresh interpreter where the heavy libraries cannot be imported, as on
the offline install or a connected machine without the export extra (test material)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers", "huggingface_hub")
_PROGRAM = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
sys.argv = ["esbundle", *{args!r}]
from bundler.cli.esbundle import main
main()
"""


def run_without_torch(*args: object, env: dict[str, str] | None = None,
                      timeout: float = 300) -> subprocess.CompletedProcess[str]:
    code = _PROGRAM.format(heavy=HEAVY, args=[str(a) for a in args])
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)
