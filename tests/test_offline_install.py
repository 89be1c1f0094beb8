"""The offline side runs where torch, transformers and huggingface_hub are not installed at all.

A fresh virtual environment gets the base install only (`pip install .`, no extras); `esbundle verify` and
`inspect` must work there, and `export` must say which extra it needs instead of crashing. That install fetches the
base dependencies (and the build backend) from the package index, so every test here is marked `needs_index`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Keys, MakeBundle

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.needs_index


@pytest.fixture(scope="session")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with `pip install .` from the package index; a failure to reach it is an error here, not a skip."""
    venv = tmp_path_factory.mktemp("base-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT)],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return venv


def run(venv: Path, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESBUNDLE_", "PYTHONPATH"))}
    env["ESBUNDLE_NO_PROGRESS"] = "1"
    # Run outside the source tree, so the installed package is what gets imported.
    return subprocess.run(
        [str(venv / "bin" / "esbundle"), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd or venv
    )


def test_base_install_has_no_heavy_libraries(base_venv: Path) -> None:
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('torch','transformers','huggingface_hub','sentence_transformers') if u.find_spec(m)])"
    )
    out = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, cwd=base_venv, check=True
    )
    assert out.stdout.strip() == "[]"


def test_verify_and_inspect_without_torch(base_venv: Path, make_bundle: MakeBundle, keys: Keys) -> None:
    bundle = make_bundle()
    verified = run(base_venv, "verify", bundle, "--trusted-key", keys.pub)
    assert verified.returncode == 0, verified.stderr
    assert "VERIFIED" in verified.stdout
    inspected = run(base_venv, "inspect", bundle, "--trusted-key", keys.pub)
    assert inspected.returncode == 0 and "checked: valid" in inspected.stdout
    (bundle / "definition" / "part-00002.zst").write_bytes(b"tampered")
    refused = run(base_venv, "verify", bundle, "--trusted-key", keys.pub)
    assert refused.returncode == 4 and "definition/part-00002.zst" in refused.stderr


def test_export_explains_the_missing_extra(base_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    attempt = run(base_venv, "export", "--model-dir", tmp_path / "model", "--task-type", "text_embedding",
                  "--signing-key", tmp_path / "none.key", "--out", tmp_path / "out")
    assert attempt.returncode == 2, attempt.stderr
    assert "esbundle[export]" in attempt.stderr and "Traceback" not in attempt.stderr
    assert not (tmp_path / "out").exists()
