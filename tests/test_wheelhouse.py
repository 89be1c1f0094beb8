"""The wheelhouse that carries the offline tool: built for real, then installed for real with no index and no network.

One wheelhouse for this interpreter's Python and this machine's platform is built per module from the package index
(the tests marked `needs_index`, which fail when it cannot be reached); the install runs the commands install.txt
prints, from inside the loader/ folder, with pip cut off from every index and from the network.

The rest need no network: pip is pointed at a port that refuses connections, at a simple index served here on
127.0.0.1, or at a find-links folder of wheels made here, to tell an unreachable index from one without a wheel for
the target, and to check that dependency markers are judged for the target Python rather than this one.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bundler.writer.wheelhouse import WheelhouseFile, _PipFailure, _target_environment, _unreachable, build_wheelhouse
from loader.errors import IndexUnreachableError, UsageError
from tests.conftest import EMBEDDING_CONFIG, TINY_VOCAB, Keys, MakeBundle, RunCli
from tests.standin.fixture import StandIn

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
PLATFORM = f"manylinux2014_{platform.machine()}"
HEAVY = ("torch", "transformers", "huggingface_hub", "sentence_transformers")
BASE = ("elasticsearch", "zstandard", "cryptography", "click", "pybase64")
# A target Python other than this one, for the marker test: pip judges markers by this one.
OTHER_PYTHON = "3.10" if PYTHON != "3.10" else "3.12"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels install on Linux only")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def offline_env(home: Path) -> dict[str, str]:
    """No index, no config file, no find-links from this machine, and a proxy that refuses every connection (but
    not for the local stand-in, which `load` reaches directly)."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("PIP_", "PYTHONPATH", "ESBUNDLE_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                                          "ALL_PROXY"))}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1",
               HOME=str(home),
               ESBUNDLE_NO_PROGRESS="1")
    return env


def wheel_name(relpath: str) -> str:
    return relpath.rsplit("/", 1)[-1].split("-")[0].lower()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[WheelhouseFile]:
    """Built from the package index (so every test using it is marked `needs_index`)."""
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


@pytest.mark.needs_index
def test_files_and_order(built: list[WheelhouseFile]) -> None:
    paths = [f.relpath for f in built]
    wheels = [p for p in paths if p.startswith("loader/wheels/")]
    assert paths == [*sorted(wheels), "loader/requirements.txt", "loader/sha256sums.txt", "loader/install.txt"]
    assert all(p.endswith(".whl") for p in wheels) and all(f.source.is_file() for f in built)
    names = {wheel_name(p) for p in wheels}
    assert "esbundle" in names and set(BASE) <= names
    assert not names & set(HEAVY), names
    # Pure-python dependencies come as any-platform wheels; compiled ones for the named Python and a platform the
    # target runs: manylinux2014 is glibc 2.17, so manylinux1 (2.5), manylinux2010 (2.12) and manylinux_2_X with
    # X <= 17 install there too (PEP 600).
    runs_here = {PLATFORM, f"manylinux1_{platform.machine()}", f"manylinux2010_{platform.machine()}",
                 *(f"manylinux_2_{minor}_{platform.machine()}" for minor in range(5, 18))}
    for p in wheels:
        tags = p.removesuffix(".whl").split("-")[-3:]
        assert tags[2] == "any" or set(tags[2].split(".")) & runs_here, p
        assert tags[1] in ("none", "abi3", f"cp{PYTHON.replace('.', '')}"), p


@pytest.mark.needs_index
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


@pytest.mark.needs_index
def test_same_inputs_same_wheelhouse(built: list[WheelhouseFile], tmp_path: Path) -> None:
    again = build_wheelhouse(tmp_path / "work", python_version=PYTHON, platform=PLATFORM)
    assert [f.relpath for f in again] == [f.relpath for f in built]
    # Our own wheel is byte-identical too, so requirements.txt and sha256sums.txt are the same text.
    assert [sha256(f.source) for f in again] == [sha256(f.source) for f in built]


@pytest.mark.needs_index
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


@pytest.mark.needs_index
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


@pytest.mark.needs_index
def test_the_index_has_no_wheel_for_an_unknown_platform(tmp_path: Path) -> None:
    # The real index answers, with nothing for this platform: a usage error, not the unreachable index it would be
    # offline (before pip's two failures were told apart, this test passed offline too).
    with pytest.raises(UsageError) as caught:
        build_wheelhouse(tmp_path, python_version=PYTHON, platform="nonexistent_platform")
    message = caught.value.message
    assert "has no wheel of" in message and "could not be reached" not in message
    assert "nonexistent_platform" in message and f"CPython {PYTHON}" in message
    assert any(name in message for name in BASE), message
    assert caught.value.hint


def use_pip(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    """This process's pip settings (build_wheelhouse hands its environment to pip) are `settings` alone: no config
    file, no proxy, no retries, a short timeout."""
    for key in list(os.environ):
        if key.upper().startswith(("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")):
            monkeypatch.delenv(key)
    defaults = {"PIP_CONFIG_FILE": os.devnull, "PIP_RETRIES": "0", "PIP_TIMEOUT": "5", "NO_PROXY": "127.0.0.1"}
    for key, value in {**defaults, **settings}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def refused() -> Iterator[str]:
    """http://127.0.0.1:PORT where a socket is bound and never listens: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def simple_index(links: Callable[[str], list[str]]) -> Iterator[str]:
    """A PEP 503 simple index on 127.0.0.1 whose page for each project links the files `links(project)` names."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = [p for p in self.path.split("/") if p]
            if len(parts) != 2 or parts[0] != "simple":
                self.send_error(404)
                return
            anchors = "".join(f'<a href="{href}">{href.rsplit("/", 1)[-1]}</a><br>\n' for href in links(parts[1]))
            body = f"<!DOCTYPE html>\n<html><body>\n{anchors}</body></html>\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("through", ["index", "proxy"])
def test_an_unreachable_index_is_not_a_missing_wheel(through: str, refused: str, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    # pip ends both with `No matching distribution found`; only its log says the index was never read.
    if through == "index":
        use_pip(monkeypatch, PIP_INDEX_URL=f"{refused}/simple")
    else:  # an https index behind a proxy that refuses: the index's host is never even looked up
        use_pip(monkeypatch, PIP_INDEX_URL="https://index.invalid/simple", HTTPS_PROXY=refused)
    with pytest.raises(IndexUnreachableError) as caught:
        build_wheelhouse(tmp_path, python_version=PYTHON, platform=PLATFORM)
    assert not isinstance(caught.value, UsageError)
    message = caught.value.message
    assert message.startswith("the package index could not be reached while downloading the loader's wheels for "
                              f"CPython {PYTHON} on {PLATFORM}: "), message
    assert "has no wheel" not in message and "Connection refused" in message and "object at 0x" not in message
    assert (refused if through == "index" else "https://index.invalid/simple/") in message
    assert "index" in (caught.value.hint or "") and "--" not in (caught.value.hint or "")


def test_an_index_without_a_wheel_for_the_platform_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    # The index answers every project with a source archive and a Windows wheel only.
    cp = f"cp{PYTHON.replace('.', '')}"

    def files(project: str) -> list[str]:
        return [f"../../files/{project}-{v}{suffix}" for v in ("9.0", "99.0")
                for suffix in (".tar.gz", f"-{cp}-{cp}-win_amd64.whl")]

    with simple_index(files) as url:
        use_pip(monkeypatch, PIP_INDEX_URL=url)
        with pytest.raises(UsageError) as caught:
            build_wheelhouse(tmp_path, python_version=PYTHON, platform=PLATFORM)
    message = caught.value.message
    assert message.startswith("the package index has no wheel of "), message
    assert f"for CPython {PYTHON} on platform {PLATFORM}" in message and "could not be reached" not in message
    assert any(f"no wheel of {name} " in message for name in BASE), message
    assert caught.value.hint and "--" not in caught.value.hint


def test_an_index_whose_files_cannot_be_fetched_is_unreachable(refused: str, monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    # The index answers, but its files lie on a host that refuses (as when a proxy lets the index through but not
    # its file host): pip fails without `No matching distribution`, and that is the index unreachable too.
    with simple_index(lambda project: [f"{refused}/files/{project}-{v}-py3-none-any.whl" for v in ("9.0", "99.0")]
                      ) as url:
        use_pip(monkeypatch, PIP_INDEX_URL=url)
        with pytest.raises(IndexUnreachableError) as caught:
            build_wheelhouse(tmp_path, python_version=PYTHON, platform=PLATFORM)
    assert not isinstance(caught.value, UsageError)
    message = caught.value.message
    assert message.startswith("the package index could not be reached while downloading "), message
    assert refused.removeprefix("http://").split(":")[0] in message and "Connection refused" in message


# What pip 23.2 and 26.2 print (`output`) and log (`--log`) when an index or a file cannot be reached, and when the
# index answers without a wheel; each pair as pip wrote it, shortened.
_NO_DISTRIBUTION = ("ERROR: Could not find a version that satisfies the requirement click (from versions: none)\n"
                    "ERROR: No matching distribution found for click\n")
_UNREACHABLE = {
    "pip 23, refused": "Could not fetch URL http://127.0.0.1:9/simple/click/: connection error: HTTPConnectionPool("
    "host='127.0.0.1', port=9): Max retries exceeded with url: /simple/click/ (Caused by NewConnectionError('<pip._"
    "vendor.urllib3.connection.HTTPConnection object at 0x7fa9aab6ac10>: Failed to establish a new connection: "
    "[Errno 111] Connection refused')) - skipping",
    "pip 26, refused": "Could not fetch URL http://127.0.0.1:9/simple/click/: connection error: [Errno 111] "
    "Connection refused - skipping",
    "pip 26, no such host": "Could not fetch URL https://nonexistent.invalid/simple/click/: connection error: Failed "
    "to resolve IP address for 'nonexistent.invalid' ([Errno -2] Name or service not known) - skipping",
    "pip 26, proxy": "Could not fetch URL https://pypi.org/simple/click/: proxy connection error: ('Unable to connect "
    "to proxy', NewConnectionError(\"HTTPSConnection(host='127.0.0.1', port=9): Failed to establish a new "
    "connection: [Errno 111] Connection refused\")) - skipping",
    "pip 23, tls": "Could not fetch URL https://10.0.0.1/simple/click/: There was a problem confirming the ssl "
    "certificate: HTTPSConnectionPool(host='10.0.0.1', port=443): Max retries exceeded with url: /simple/click/ "
    "(Caused by SSLError(CertificateError(\"hostname '10.0.0.1' doesn't match 'pypi.org'\"))) - skipping",
    "pip 23, timeout": "Could not fetch URL https://pypi.org/simple/click/: connection error: HTTPSConnectionPool("
    "host='pypi.org', port=443): Read timed out. (read timeout=2.0) - skipping",
    "pip 23, 503": "Could not fetch URL https://pypi.org/simple/click/: HTTPSConnectionPool(host='pypi.org', port=443"
    "): Max retries exceeded with url: /simple/click/ (Caused by ResponseError('too many 503 error responses')) - "
    "skipping",
}


@pytest.mark.parametrize("logged", _UNREACHABLE.values(), ids=_UNREACHABLE.keys())
def test_a_page_pip_could_not_read_is_an_unreachable_index(logged: str) -> None:
    log = f"2026-12-02T19:50:34,827 Looking in indexes: x\n2026-12-02T19:50:34,828 {logged}\n"
    found = _unreachable(_PipFailure(_NO_DISTRIBUTION, log))
    page = re.search(r"Could not fetch URL (\S+): ", logged)
    assert page and found and found.startswith(f"{page[1]}: "), found
    assert "object at 0x" not in found and " - skipping" not in found and len(found) <= 300


@pytest.mark.parametrize(("output", "expected"), [
    ("WARNING: The repository located at example.invalid is not a trusted or secure host and is being ignored. If "
     "this repository is available via HTTPS we recommend you use HTTPS instead.\n" + _NO_DISTRIBUTION,
     "example.invalid: pip ignores an index on a host that is neither HTTPS nor trusted"),
    ("Collecting click\nerror: connection-failed\n\n× Failed to connect to files.example while fetching "
     "https://files.example/click-8.1.7-py3-none-any.whl\n╰─> [Errno 111] Connection refused\n\nhint: Are you "
     "connected to the Internet?\n", "Failed to connect to files.example while fetching https://files.example/"
     "click-8.1.7-py3-none-any.whl: [Errno 111] Connection refused"),
    ("Collecting click\nERROR: Exception:\nTraceback (most recent call last):\n    raise ConnectionError(e)\n"
     "pip._vendor.requests.exceptions.ConnectionError: HTTPSConnectionPool(host='files.example', port=443): Max "
     "retries exceeded (Caused by NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at "
     "0x7f4f>: Failed to establish a new connection: [Errno 111] Connection refused'))\n",
     "pip._vendor.requests.exceptions.ConnectionError: HTTPSConnectionPool(host='files.example', port=443): Max "
     "retries exceeded (Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] Connection "
     "refused'))"),
], ids=["insecure index ignored", "pip 26, file refused", "pip 23, file refused"])
def test_a_connection_pip_reports_failed_is_an_unreachable_index(output: str, expected: str) -> None:
    assert _unreachable(_PipFailure(output, "")) == expected


@pytest.mark.parametrize("log", [
    "",
    "2026-12-02T19:50:36,797 Could not fetch URL https://pypi.org/simple/click/: 404 Client Error: Not Found for url: "
    "https://pypi.org/simple/click/ - skipping",
], ids=["every page read", "no such project"])
def test_an_index_that_answered_is_not_unreachable(log: str) -> None:
    # A retry that then succeeded is no failure: pip read the page in the end and found no wheel on it.
    output = ("WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after "
              "connection broken by 'NewConnectionError('Failed to establish a new connection: [Errno 111] "
              "Connection refused')': /simple/click/\n" + _NO_DISTRIBUTION)
    assert _unreachable(_PipFailure(output, log)) is None


def make_wheel(folder: Path, name: str, *requires: str) -> None:
    """A pure-Python wheel of `name` 1.0 with nothing in it but its metadata, requiring `requires`."""
    dist = name.replace("-", "_")
    info = f"{dist}-1.0.dist-info"
    metadata = "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{metadata}",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{dist}-1.0-py3-none-any.whl", "w") as archive:
        for path, text in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(path, text)


def test_markers_are_evaluated_for_the_target_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip judges `python_version == ...` by the interpreter running it: the wheelhouse for another Python gets the
    wheels only that Python needs (and their own dependencies), and loses those only this one needs."""
    project = tmp_path / "project"
    (project / "carried_tool").mkdir(parents=True)
    (project / "carried_tool" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "carried-tool"\nversion = "1.0"\ndependencies = ["base-dep>=1"]\n\n'
        '[tool.setuptools]\npackages = ["carried_tool"]\n')
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "base-dep", "everywhere", f'only-on-target; python_version == "{OTHER_PYTHON}"',
               f'only-here; python_version == "{PYTHON}"')
    make_wheel(links, "only-on-target", "target-child")
    for name in ("everywhere", "only-here", "target-child"):
        make_wheel(links, name)
    use_pip(monkeypatch, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links))
    files = build_wheelhouse(tmp_path / "work", python_version=OTHER_PYTHON, platform=PLATFORM,
                             project_root=project)
    wheels = {wheel_name(f.relpath).replace("_", "-") for f in files if f.relpath.endswith(".whl")}
    assert wheels == {"carried-tool", "base-dep", "everywhere", "only-on-target", "target-child"}
    requirements = next(f.source for f in files if f.relpath == "loader/requirements.txt").read_text()
    assert f"for CPython {OTHER_PYTHON} on {PLATFORM}" in requirements and "only-here" not in requirements
    assert sorted(p.name for p in (tmp_path / "work" / "wheels").iterdir()) == sorted(
        f.source.name for f in files if f.relpath.endswith(".whl"))


@pytest.mark.parametrize(("tag", "expected"), [
    ("manylinux2014_x86_64", ("linux", "Linux", "posix", "x86_64")),
    ("manylinux_2_28_aarch64", ("linux", "Linux", "posix", "aarch64")),
    ("musllinux_1_2_x86_64", ("linux", "Linux", "posix", "x86_64")),
    ("macosx_11_0_arm64", ("darwin", "Darwin", "posix", "arm64")),
    ("win_amd64", ("win32", "Windows", "nt", "AMD64")),
])
def test_target_environment_follows_the_platform_tag(tag: str, expected: tuple[str, ...]) -> None:
    env = _target_environment("3.10", tag)
    assert (env["sys_platform"], env["platform_system"], env["os_name"], env["platform_machine"]) == expected
    assert (env["python_version"], env["python_full_version"], env["implementation_name"]) == ("3.10", "3.10.0",
                                                                                              "cpython")


def test_bad_python_version_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a CPython 3 version"):
        build_wheelhouse(tmp_path, python_version="2.7")


@pytest.mark.needs_index
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
