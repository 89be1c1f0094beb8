"""The wheelhouse: the offline tool itself, carried in the bundle's loader/ folder, installable with no package index.

Owns what goes in loader/: this project's wheel, built from the source tree; binary wheels of its base (offline)
dependencies and of theirs, for one target CPython and platform (never the [export] extra: no torch, no
transformers); `requirements.txt`, pinning each wheel by version and sha256 for pip's hash-checking mode;
`sha256sums.txt`, for a check with plain `sha256sum` before the tool is trusted; and `install.txt`, the exact commands.
The files are made in a work directory; the caller lists them in the signed manifest under the returned paths.

Default platform `manylinux2014_x86_64`: glibc 2.17 or newer (RHEL/CentOS 7 and every later x86-64 Linux), the widest
reach for which every base dependency still publishes wheels (cryptography, cffi and zstandard ship manylinux2014
wheels; the rest are pure Python, py3-none-any). If one stops publishing it, pass a newer tag such as
`manylinux_2_28_x86_64`: the missing wheel is then named in a UsageError.

pip evaluates dependency markers (`python_version < "3.11"`, `sys_platform == "win32"`) against the interpreter that
runs it, not the target; so what pip downloads is checked against the target's own markers, completed and pruned.

When pip fails, two causes are told apart, because pip itself ends both with `No matching distribution found`: an
index it could not reach (refused, unresolvable, timed out, a proxy or TLS failure: an EsbundleError saying the
package index could not be reached, with the page and pip's reason) and an index that answered without a wheel for
the target (a UsageError naming the requirement, the CPython version and the platform). Page failures are only in
pip's debug log, so pip runs with a log file, read when it fails.
"""
from __future__ import annotations

import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loader import settings
from loader.bundle.content import sha256_file
from loader.errors import EsbundleError, IndexUnreachableError, UsageError
from loader.format.layout import LOADER_DIR, MAX_COMPONENT_LEN, path_problems

try:  # the library itself where the connected side has it (pytest and transformers pull it in) ...
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # ... else the copy inside pip, which this module drives anyway
    from pip._vendor.packaging.markers import default_environment  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Zip entries cannot predate 1980; a fixed time makes our own wheel byte-identical from build to build.
_DEFAULT_EPOCH = "315532800"
# Each round downloads what the target's markers need and pip's host-side evaluation left out; two suffice in practice.
_MAX_ROUNDS = 5
# The PEP 600 form first: `manylinux\d*` alone would take `manylinux_2_28_x86_64` for machine `2_28_x86_64`.
_LINUX_TAG = re.compile(r"^(?:manylinux_\d+_\d+|manylinux\d*|musllinux_\d+_\d+|linux)_(?P<machine>.+)$")
_MAC_TAG = re.compile(r"^macosx_\d+_\d+_(?P<machine>.+)$")
_WINDOWS_MACHINES = {"win32": "x86", "win_amd64": "AMD64", "win_arm64": "ARM64"}
_NO_DISTRIBUTION = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")
# pip 23 to 26 log each index or find-links page it could not read, at debug level (its log file only), as
# `Could not fetch URL <url>: <reason> - skipping`; a 404 is an answer (the index has no such project), not a failure.
_UNREAD_PAGE = re.compile(r"Could not fetch URL (?P<url>\S+?): (?P<reason>.+?)(?: - skipping)?$", re.MULTILINE)
_IGNORED_INDEX = re.compile(r"The repository located at (?P<host>\S+) is not a trusted or secure host and is being "
                            r"ignored")
# A connection that failed outside the pages (a wheel's own download): pip 23 prints the exception, pip 26 a diagnostic.
_NETWORK = re.compile(
    r"NewConnectionError|NameResolutionError|ProxyError|ConnectTimeout|ReadTimeout|SSLError|ConnectionError|"
    r"Failed to establish a new connection|Name or service not known|Temporary failure in name resolution|"
    r"Max retries exceeded|[Tt]imed out|Connection (?:refused|reset|aborted)|RemoteDisconnected|IncompleteRead|"
    r"CERTIFICATE_VERIFY_FAILED|Failed to connect to|didn't respond within|Failed to establish a secure connection|"
    r"connection-failed|connection-timeout|ssl-verification-failed|proxy-connection-failed")
_UNREACHABLE_HINT = ("the connected side downloads these wheels from a package index: check the network, any proxy "
                     "(HTTPS_PROXY, NO_PROXY), the certificates, and which index pip is set to use (PIP_INDEX_URL, "
                     "pip.conf); then run the same command again")


@dataclass(frozen=True)
class WheelhouseFile:
    relpath: str  # POSIX path inside the bundle, under "loader/"
    source: Path  # where the file lies now (inside the work directory)


@dataclass(frozen=True)
class _PipFailure:
    output: str  # what pip printed
    log: str  # its debug log (pip's --log file), where the index pages it could not read are named


@dataclass(frozen=True)
class _Wheel:
    path: Path
    name: str  # canonical project name (PEP 503)
    version: str
    requires: tuple[str, ...]  # Requires-Dist, markers included


def build_wheelhouse(work: Path, *, python_version: str = "3.11", platform: str = "manylinux2014_x86_64",
                     project_root: Path = PROJECT_ROOT) -> list[WheelhouseFile]:
    """Make the loader/ files in `work` for CPython `python_version` on `platform`; wheels sorted, then the rest.

    `work/wheels` is emptied first: a wheel left by an earlier run would otherwise be carried along.
    """
    version = re.fullmatch(r"3\.(\d+)(?:\.\d+)?", python_version)
    if not version:
        raise UsageError(f"loader Python {python_version!r} is not a CPython 3 version", hint="e.g. 3.11")
    if not (project_root / "pyproject.toml").is_file():
        raise UsageError(f"no pyproject.toml in {project_root}: the loader's wheel is built from the source tree",
                         hint="run from a source checkout of esbundle")
    wheels = work / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    own = _read_wheel(_build_own_wheel(project_root, wheels))
    kept = [_within_limits(w, platform) for w in _gather(own, wheels, python_version, platform, f"cp3{version[1]}")]
    files = [WheelhouseFile(f"{LOADER_DIR}/wheels/{w.path.name}", w.path) for w in kept]
    files += [WheelhouseFile(f"{LOADER_DIR}/{p.name}", p) for p in _write_instructions(work, kept, own,
                                                                                       python_version, platform)]
    problems = path_problems(f.relpath for f in files)
    if problems:
        raise EsbundleError("the wheelhouse has names a bundle cannot hold", problems=problems)
    return files


# Legacy manylinux names and the glibc each stands for (PEP 600).
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"^(?:manylinux_(?P<major>\d+)_(?P<minor>\d+)|(?P<legacy>manylinux\d+))_(?P<arch>.+)$")


def _glibc(tag: str) -> tuple[tuple[int, int], str] | None:
    """(glibc version, machine) of a manylinux platform tag; None for any other tag."""
    match = _MANYLINUX.match(tag)
    if not match:
        return None
    version = _LEGACY_MANYLINUX.get(match["legacy"] or "") or (int(match["major"] or 0), int(match["minor"] or 0))
    return version, match["arch"]


def _runs_on(tag: str, platform: str) -> bool:
    """Whether a wheel's platform tag installs on the target platform (a manylinux target takes older glibcs)."""
    wheel, target = _glibc(tag), _glibc(platform)
    if wheel and target:
        return wheel[1] == target[1] and wheel[0] <= target[0]
    return tag in (platform, "any")


def _within_limits(wheel: _Wheel, platform: str) -> _Wheel:
    """A wheel whose file name is longer than a bundle path component may be (several manylinux tags compressed
    into one name, e.g. charset_normalizer's three) renamed to the one tag of its set the target runs, the shortest:
    a name with a subset of the wheel's own tags is still its valid name (PEP 425), and its bytes, so the hash that
    pins it, are unchanged."""
    name = wheel.path.name
    if len(name) <= MAX_COMPONENT_LEN:
        return wheel
    *head, platforms = name[:-len(".whl")].split("-")
    usable = sorted((t for t in platforms.split(".") if _runs_on(t, platform)), key=len)
    if not usable:
        return wheel  # refused below with the path rule's words
    renamed = wheel.path.with_name("-".join([*head, usable[0]]) + ".whl")
    wheel.path.rename(renamed)
    return _Wheel(renamed, wheel.name, wheel.version, wheel.requires)


def _gather(own: _Wheel, wheels: Path, python_version: str, platform: str, abi: str) -> list[_Wheel]:
    """Download the closure of our wheel's requirements for the target into `wheels`; return it sorted by file."""
    target = _target_environment(python_version, platform)
    # The first round finds only our wheel and downloads its base requirements; later rounds add what the target's
    # markers need beyond pip's choice, pinning what is already here so pip cannot pick other versions.
    for _ in range(_MAX_ROUNDS):
        index = _index(wheels)
        needed, missing = _closure(own, index, target)
        if not missing:
            break
        pins = [f"{index[name].name}=={index[name].version}" for name in sorted(needed - {own.name})]
        _download([*pins, *missing], wheels, python_version, platform, abi)
    else:
        raise EsbundleError(f"the loader's dependencies for CPython {python_version} on {platform} did not settle "
                            f"after {_MAX_ROUNDS} rounds; still missing: {', '.join(missing)}")
    for name, wheel in index.items():
        if name not in needed:  # pulled in by a marker that holds here but not on the target
            wheel.path.unlink()
    return sorted((index[name] for name in needed), key=lambda w: w.path.name)


def _write_instructions(work: Path, kept: list[_Wheel], own: _Wheel, python_version: str,
                        platform: str) -> list[Path]:
    """requirements.txt (every wheel pinned by sha256), sha256sums.txt and install.txt, in `work`."""
    digests = {w.path.name: sha256_file(w.path) for w in kept}
    requirements = work / "requirements.txt"
    lines = [f"# esbundle {own.version} and its offline runtime, for CPython {python_version} on {platform}.",
             "# Each wheel pinned by version and sha256: install with --require-hashes (see install.txt)."]
    lines += [f"{w.name}=={w.version} \\\n    --hash=sha256:{digests[w.path.name]}" for w in
              sorted(kept, key=lambda w: w.name)]
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    install = work / "install.txt"
    install.write_text(_install_text(python_version, platform, own.version), encoding="utf-8")
    # Paths relative to loader/, so that `sha256sum -c sha256sums.txt` runs from inside that folder.
    sums = [(digests[w.path.name], f"wheels/{w.path.name}") for w in kept]
    sums += [(sha256_file(requirements), requirements.name), (sha256_file(install), install.name)]
    checksums = work / "sha256sums.txt"
    checksums.write_text("".join(f"{digest}  {rel}\n" for digest, rel in sums), encoding="utf-8")
    return [requirements, checksums, install]


def _build_own_wheel(root: Path, wheels: Path) -> Path:
    """Build esbundle's wheel from a clean copy of the source tree into `wheels`; return its path."""
    with tempfile.TemporaryDirectory(prefix="esbundle-wheel-") as tmp:
        source, dist = Path(tmp) / "source", Path(tmp) / "dist"
        _copy_source(root, source)
        # Without isolation pip needs no index and the wheel is made by the setuptools this venv pins, so the same
        # tree gives the same bytes; an interpreter that lacks pyproject's build requirements gets them from the index.
        isolation = ["--no-build-isolation"] if _has_build_requirements(root) else []
        env = {**os.environ, "SOURCE_DATE_EPOCH": settings.get(settings.SOURCE_DATE_EPOCH) or _DEFAULT_EPOCH}
        failure = _pip(["wheel", "--no-deps", *isolation, "-w", str(dist), str(source)], env)
        if failure:
            raise _failed(failure, f"building the wheel of {root}")
        built = sorted(dist.glob("*.whl"))
        if len(built) != 1:
            raise EsbundleError(f"building the wheel of {root} gave {len(built)} wheels, expected one")
        return Path(shutil.move(str(built[0]), wheels / built[0].name))


def _copy_source(root: Path, dest: Path) -> None:
    # setuptools builds inside the tree it is given and reuses its build/lib, where a module since deleted from the
    # source still lies and would ship; so build from a copy of the top-level files and packages only.
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir()
    for entry in sorted(root.iterdir()):
        if entry.is_file():
            shutil.copy2(entry, dest / entry.name)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            shutil.copytree(entry, dest / entry.name, ignore=skip)


def _has_build_requirements(root: Path) -> bool:
    """Whether this interpreter already has every [build-system].requires of pyproject.toml."""
    if sys.version_info < (3, 11):
        return False  # no tomllib to read them with
    import tomllib

    requires = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    for text in requires:
        req = Requirement(text)
        try:
            if not req.specifier.contains(importlib.metadata.version(req.name), prereleases=True):
                return False
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


def _download(requirements: list[str], wheels: Path, python: str, platform: str, abi: str) -> None:
    args = ["download", "--only-binary=:all:", "--python-version", python, "--platform", platform,
            "--implementation", "cp", "--abi", abi, "-d", str(wheels), *requirements]
    failure = _pip(args, os.environ)
    if failure is None:
        return
    # pip names the requirement it gave up on; with --only-binary, and every index read, that means no wheel for this
    # python and platform. pip says the same when it could not read the index at all, so that is ruled out first.
    missing = None if _unreachable(failure) else _NO_DISTRIBUTION.search(failure.output)
    if missing:
        raise UsageError(f"the package index has no wheel of {missing[1]} for CPython {python} on platform {platform}",
                         hint="pick a platform tag the package publishes wheels for (e.g. manylinux_2_28_x86_64) "
                              "or another loader Python")
    raise _failed(failure, f"downloading the loader's wheels for CPython {python} on {platform}")


def _pip(args: list[str], env: Mapping[str, str]) -> _PipFailure | None:
    """Run this interpreter's pip with a debug log; return None on success, else what it printed and logged."""
    with tempfile.TemporaryDirectory(prefix="esbundle-pip-") as tmp:
        log = Path(tmp) / "pip.log"
        done = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--progress-bar",
                               "off", "--log", str(log)], capture_output=True, text=True, env=dict(env), check=False)
        if done.returncode == 0:
            return None
        logged = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        return _PipFailure(done.stdout + done.stderr, logged)


def _failed(failure: _PipFailure, step: str) -> EsbundleError:
    """The error for a pip run that failed during `step`: an index it could not reach, or else pip's last error."""
    unreachable = _unreachable(failure)
    if unreachable:
        return IndexUnreachableError(f"the package index could not be reached while {step}: {unreachable}",
                                     hint=_UNREACHABLE_HINT)
    return EsbundleError(f"{step} failed: {_last_error(failure.output)}")


def _unreachable(failure: _PipFailure) -> str | None:
    """Where and why pip could not reach an index (a page it could not read, or a download cut off), or None.

    A page pip could not read makes any `No matching distribution` untrustworthy: the wheel may be behind it. The page
    of the requirement pip gave up on is named when there is one.
    """
    unread = [(m["url"], m["reason"]) for m in _UNREAD_PAGE.finditer(failure.log) if not m["reason"].startswith("404 ")]
    unread += [(m["host"], "pip ignores an index on a host that is neither HTTPS nor trusted")
               for m in _IGNORED_INDEX.finditer(failure.output + failure.log)]
    if unread:
        missing = _NO_DISTRIBUTION.search(failure.output)
        name = canonicalize_name(missing[1]) if missing else None
        url, reason = next((u for u in unread if canonicalize_name(u[0].rstrip("/").rsplit("/", 1)[-1]) == name),
                           unread[0])
        return _tidy(f"{url}: {reason}")
    if _NO_DISTRIBUTION.search(failure.output):
        return None
    lines = [line.strip() for line in failure.output.splitlines() if line.strip()]
    # Not a retry (it may have worked), pip's hint, or the detail under pip 26's diagnostic (read with it below).
    found = [i for i, line in enumerate(lines) if _NETWORK.search(line) and not line.startswith(("WARNING:", "hint:",
                                                                                                   "╰─>"))]
    if not found:
        return None
    last = found[-1]
    detail = lines[last] + (f": {lines[last + 1][3:]}" if lines[last + 1:last + 2] and
                            lines[last + 1].startswith("╰─>") else "")
    return _tidy(detail.lstrip("× "))


def _tidy(text: str) -> str:
    """pip's reason on one line without urllib3's object reprs, at most 300 characters."""
    text = re.sub(r"<[^<>]* object at 0x[0-9a-f]+>: ?", "", " ".join(text.split()))
    return text if len(text) <= 300 else text[:299] + "…"


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1]


def _target_environment(python: str, platform: str) -> dict[str, str]:
    """Marker variables of the target; the host's stand in for what a tag cannot tell (platform_release)."""
    env = dict(default_environment())
    full = python if python.count(".") == 2 else f"{python}.0"
    env.update(python_version=".".join(python.split(".")[:2]), python_full_version=full, implementation_name="cpython",
               implementation_version=full, platform_python_implementation="CPython")
    if match := _LINUX_TAG.match(platform):
        env.update(sys_platform="linux", platform_system="Linux", os_name="posix", platform_machine=match["machine"])
    elif match := _MAC_TAG.match(platform):
        env.update(sys_platform="darwin", platform_system="Darwin", os_name="posix", platform_machine=match["machine"])
    elif platform in _WINDOWS_MACHINES:
        env.update(sys_platform="win32", platform_system="Windows", os_name="nt",
                   platform_machine=_WINDOWS_MACHINES[platform])
    return env


def _read_wheel(path: Path) -> _Wheel:
    name, version = path.name.split("-")[:2]
    with zipfile.ZipFile(path) as archive:
        metadata = next((n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)), None)
        if metadata is None:
            raise EsbundleError(f"{path.name} is not a wheel: it has no .dist-info/METADATA")
        headers = email.parser.BytesHeaderParser().parsebytes(archive.read(metadata))
    return _Wheel(path, canonicalize_name(name), version, tuple(headers.get_all("Requires-Dist") or ()))


def _index(wheels: Path) -> dict[str, _Wheel]:
    index: dict[str, _Wheel] = {}
    for path in sorted(wheels.glob("*.whl")):
        wheel = _read_wheel(path)
        if wheel.name in index:
            raise EsbundleError(f"two wheels of {wheel.name}: {index[wheel.name].path.name} and {path.name}")
        index[wheel.name] = wheel
    return index


def _closure(root: _Wheel, index: Mapping[str, _Wheel], target: Mapping[str, str]) -> tuple[set[str], list[str]]:
    """The names the target needs from `root` down, and the requirements (markers dropped) no wheel here meets."""
    needed, missing = {root.name}, set()
    todo: list[tuple[_Wheel, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        wheel, extras = todo.pop()
        if (wheel.name, extras) in seen:
            continue
        seen.add((wheel.name, extras))
        for text in wheel.requires:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({**target, "extra": e}) for e in ("", *sorted(extras))):
                continue  # not for the target, or only for an extra nobody asked for (esbundle[export])
            dep = index.get(canonicalize_name(req.name))
            if dep is None or not req.specifier.contains(dep.version, prereleases=True):
                missing.add(req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "") + str(req.specifier))
                continue
            needed.add(dep.name)
            todo.append((dep, frozenset(req.extras)))
    return needed, sorted(missing)


def _install_text(python: str, platform: str, version: str) -> str:
    interpreter = "python" + ".".join(python.split(".")[:2])
    return f"""\
esbundle {version}: install the offline tool from this folder alone (no package index, no network)

The wheels are for CPython {python} on {platform}. Run every command from inside this loader/
folder (for a bundle on several volumes, the loader/ folder of the first volume).

1. Check the files here before trusting the tool they install; every line must end in OK:
     $ sha256sum -c sha256sums.txt
   This catches a damaged or altered copy. To know that sha256sums.txt itself is the publisher's, compare
   the output of `sha256sum sha256sums.txt` with a value the publisher gave you some other way.

2. Install into a new virtual environment outside the bundle (the bundle must stay as it was signed):
     $ {interpreter} -m venv ~/esbundle-venv
     $ ~/esbundle-venv/bin/pip install --no-index --require-hashes --find-links wheels -r requirements.txt

3. Verify the bundle with the publisher's public key:
     $ ~/esbundle-venv/bin/esbundle verify .. --trusted-key PUBLISHER.pub

The signed manifest lists and hashes every file of this folder like the model's own files, so step 3
checks them again under the publisher's signature.
"""
