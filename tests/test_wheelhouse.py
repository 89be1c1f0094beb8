"""The wheelhouse that carries the offline tool: built for real, then installed for real with no index and no network.

One wheelhouse for this interpreter's Python and this machine's platform is built per module; the install runs the
commands install.txt prints, from inside the loader/ folder, with pip cut off from every index and from the network.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from bundler.writer.wheelhouse import WheelhouseFile, build_wheelhouse
from loader.errors import UsageError
from tests.conftest import EMBEDDING_CONFIG, TINY_VOCAB, Keys, MakeBundle, RunCli
from tests.standin.fixture import StandIn

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
PLATFORM = f"manylinux2014_{platform.machine()}"
HEAVY = ("torch", "transformers", "huggingface_hub", "sentence_transformers")
BASE = ("elasticsearch", "zstandard", "cryptography", "click")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels install on Linux only")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def offline_env(home: Path) -> dict[str, str]:
    """No index, no config file, no find-links from this machine, and a proxy that refuses every connection."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("PIP_", "PYTHONPATH", "ESBUNDLE_", "HTTP_PROXY", "HTTPS_PROXY"))}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", HOME=str(home),
               ESBUNDLE_NO_PROGRESS="1")
    return env


def wheel_name(relpath: str) -> str:
    return relpath.rsplit("/", 1)[-1].split("-")[0].lower()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[WheelhouseFile]:
    return build_wheelhouse(tmp_path_factory.mktemp("work"), python_version=PYTHON, platform=PLATFORM)


@pytest.fixture(scope="module")
def loader_dir(built: list[WheelhouseFile], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files laid out under their bundle paths, as the writer will put them."""
    bundle = tmp_path_factory.mktemp("bundle-side")
    for f in built:
        (bundle / f.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.source, bundle / f.relpath)
    return bundle / "loader"


@pytest.fixture(scope="module")
def installed(loader_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run install.txt's commands (`$ ...` lines) from inside loader/; return the venv they make."""
    home = tmp_path_factory.mktemp("home")
    commands = re.findall(r"^\s+\$ (.+)$", (loader_dir / "install.txt").read_text(), flags=re.MULTILINE)
    install = [c for c in commands if "esbundle verify" not in c]
    assert len(install) == 3 and commands[-1].startswith("~/esbundle-venv/bin/esbundle verify .. "), commands
    for command in install:
        # The interpreter the doc names may not be on PATH here; this one is that version.
        command = command.replace(f"python{PYTHON} ", f"{sys.executable} ", 1)
        done = subprocess.run(["bash", "-c", command], cwd=loader_dir, env=offline_env(home),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return home / "esbundle-venv"


def test_files_and_order(built: list[WheelhouseFile]) -> None:
    paths = [f.relpath for f in built]
    wheels = [p for p in paths if p.startswith("loader/wheels/")]
    assert paths == [*sorted(wheels), "loader/requirements.txt", "loader/sha256sums.txt", "loader/install.txt"]
    assert all(p.endswith(".whl") for p in wheels) and all(f.source.is_file() for f in built)
    names = {wheel_name(p) for p in wheels}
    assert "esbundle" in names and set(BASE) <= names
    assert not names & set(HEAVY), names
    # Pure-python dependencies come as any-platform wheels; compiled ones for the named Python and platform only.
    for p in wheels:
        tags = p.removesuffix(".whl").split("-")[-3:]
        assert tags[2] == "any" or PLATFORM in tags[2], p
        assert tags[1] in ("none", "abi3", f"cp{PYTHON.replace('.', '')}"), p


def test_requirements_pin_every_wheel_by_its_hash(built: list[WheelhouseFile]) -> None:
    sources = {f.relpath: f.source for f in built}
    text = sources["loader/requirements.txt"].read_text()
    pins = dict(re.findall(r"^([a-z0-9-]+==\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", text, flags=re.MULTILINE))
    wheels = {rel: src for rel, src in sources.items() if rel.endswith(".whl")}
    assert len(pins) == len(wheels)
    by_pin = {}
    for rel, src in wheels.items():
        name, version = rel.rsplit("/", 1)[-1].split("-")[:2]
        by_pin[f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"] = sha256(src)
    assert pins == by_pin


def test_same_inputs_same_wheelhouse(built: list[WheelhouseFile], tmp_path: Path) -> None:
    again = build_wheelhouse(tmp_path / "work", python_version=PYTHON, platform=PLATFORM)
    assert [f.relpath for f in again] == [f.relpath for f in built]
    # Our own wheel is byte-identical too, so requirements.txt and sha256sums.txt are the same text.
    assert [sha256(f.source) for f in again] == [sha256(f.source) for f in built]


def test_plain_sha256sum_checks_the_folder(loader_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(["sha256sum", "-c", "sha256sums.txt"], cwd=loader_dir, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = {line.rsplit(": ", 1)[0] for line in done.stdout.splitlines() if line.endswith(": OK")}
    listed = {str(p.relative_to(loader_dir)) for p in loader_dir.rglob("*") if p.is_file()}
    assert checked == listed - {"sha256sums.txt"}
    copy = shutil.copytree(loader_dir, tmp_path / "loader")
    wheel = next((copy / "wheels").glob("esbundle-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 1  # one bit flipped in transit
    wheel.write_bytes(bytes(data))
    done = subprocess.run(["sha256sum", "-c", "sha256sums.txt"], cwd=copy, capture_output=True, text=True)
    assert done.returncode != 0 and f"wheels/{wheel.name}: FAILED" in done.stdout


def test_installs_offline_and_verifies(installed: Path, make_bundle: MakeBundle, keys: Keys, tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    esbundle = installed / "bin" / "esbundle"
    helped = subprocess.run([esbundle, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "verify" in helped.stdout, helped.stderr
    verified = subprocess.run([esbundle, "verify", make_bundle(), "--trusted-key", keys.pub],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VERIFIED" in verified.stdout
    # The installed tool is the wheel's copy, not this source tree, and nothing heavy came along.
    probe = f"import importlib.util as u, loader; print(loader.__file__); print([m for m in {HEAVY} if u.find_spec(m)])"
    out = subprocess.run([installed / "bin" / "python", "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True).stdout.splitlines()
    assert out[0].startswith(str(installed)) and out[1] == "[]"
    torch = subprocess.run([installed / "bin" / "python", "-c", "import torch"], capture_output=True, env=env,
                           cwd=tmp_path)
    assert torch.returncode != 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="needs a target Python older than this one")
def test_markers_are_evaluated_for_the_target_python(tmp_path: Path) -> None:
    # pip judges `python_version < "3.11"` by the interpreter running it; a 3.10 wheelhouse still needs those wheels.
    files = build_wheelhouse(tmp_path, python_version="3.10", platform=PLATFORM)
    wheels = {wheel_name(f.relpath).replace("_", "-"): f.source for f in files if f.relpath.endswith(".whl")}
    target = {**default_environment(), "python_version": "3.10", "python_full_version": "3.10.0", "extra": ""}
    here = {**default_environment(), "extra": ""}
    only_for_target = []
    for source in wheels.values():
        with zipfile.ZipFile(source) as archive:
            meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            text = archive.read(meta).decode()
        for line in re.findall(r"^Requires-Dist: (.+)$", text, flags=re.MULTILINE):
            req = Requirement(line)
            if req.marker and req.marker.evaluate(target) and not req.marker.evaluate(here):
                only_for_target.append(req.name.lower().replace("_", "-"))
    if not only_for_target:
        pytest.skip("no dependency has a marker that differs between 3.10 and this Python today")
    assert set(only_for_target) <= set(wheels), only_for_target


def test_no_wheel_for_the_platform_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        build_wheelhouse(tmp_path, python_version=PYTHON, platform="nonexistent_platform")
    message = caught.value.message
    assert "nonexistent_platform" in message and f"CPython {PYTHON}" in message
    assert any(name in message for name in BASE), message
    assert caught.value.hint


def test_bad_python_version_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a CPython 3 version"):
        build_wheelhouse(tmp_path, python_version="2.7")


def test_bundle_carries_its_loader_on_the_first_volume(tmp_path: Path, keys: Keys, run_cli: RunCli,
                                                        standin: Callable[..., StandIn]) -> None:
    """pack --with-loader --volume-size: install from vol001 alone, offline, then verify and dry-run a load."""
    definition = tmp_path / "m.pt"
    definition.write_bytes(os.urandom(12 << 20))
    (tmp_path / "c.json").write_text(json.dumps(EMBEDDING_CONFIG))
    (tmp_path / "v.json").write_text(json.dumps(TINY_VOCAB))
    packed = run_cli("pack", "--definition", definition, "--config", tmp_path / "c.json", "--vocab",
                     tmp_path / "v.json", "--signing-key", keys.pair.private_path, "--out", tmp_path / "b",
                     "--es-model-id", "carried", "--volume-size", "16M", "--with-loader", "--loader-python", PYTHON,
                     "--loader-platform", PLATFORM)
    assert packed.exit_code == 0, packed.output
    volumes = sorted((tmp_path / "b").glob("vol*"))
    assert len(volumes) >= 2 and (volumes[0] / "loader" / "install.txt").exists()
    assert not any((v / "loader").exists() for v in volumes[1:])
    manifest = json.loads((volumes[0] / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"] if f["role"] == "loader"} >= {
        "loader/install.txt", "loader/requirements.txt", "loader/sha256sums.txt"}

    home = tmp_path / "home"
    home.mkdir()
    loader_dir = volumes[0] / "loader"
    assert subprocess.run(["sha256sum", "-c", "--quiet", "sha256sums.txt"], cwd=loader_dir).returncode == 0
    commands = re.findall(r"^\s+\$ (.+)$", (loader_dir / "install.txt").read_text(), flags=re.MULTILINE)
    for command in [c for c in commands if "esbundle verify" not in c and "sha256sum" not in c]:
        command = command.replace(f"python{PYTHON} ", f"{sys.executable} ", 1)
        done = subprocess.run(["bash", "-c", command], cwd=loader_dir, env=offline_env(home), capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    esbundle = home / "esbundle-venv" / "bin" / "esbundle"

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(esbundle), *map(str, args)], capture_output=True, text=True, cwd=home,
                              env=offline_env(home))

    verified = run("verify", *volumes, "--trusted-key", keys.pub)
    assert verified.returncode == 0, verified.stderr
    server = standin()
    planned = run("load", *volumes, "--trusted-key", keys.pub, "--url", server.url, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "would create [carried]" in planned.stdout
