"""Downloading a package from Elastic's model server (or a mirror): small files whole, the `.pt` resumably.

The export's one network chokepoint for packages. urllib honours the proxy variables (HTTPS_PROXY, HTTP_PROXY,
NO_PROXY, lower-case too) by itself. The `.pt` streams into a download directory beside the bundle's target; a cut
leaves what arrived there, and the next run asks only for the rest (HTTP Range). What arrived is checked against the
metadata's size and sha256 before anything else reads it, and a mismatch removes it.
"""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from loader.bundle.content import sha256_file
from loader.errors import ModelError, UsageError
from loader.format.package import ELASTIC_REPOSITORY
from loader.progress import Progress

DEFAULT_URL = ELASTIC_REPOSITORY + "/"
CHUNK = 1 << 20
TIMEOUT = 60
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class Repository:
    """A model repository's base URL (ending in `/`): files are resolved below it, never elsewhere."""

    base: str

    @classmethod
    def parse(cls, url: str) -> Repository:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https", "file") or (parsed.scheme != "file" and not parsed.netloc):
            raise UsageError(f"--elastic-models-url {url!r}: must be an http://, https:// or file:// URL")
        if parsed.username or parsed.password:
            raise UsageError("--elastic-models-url: must not carry credentials (Elastic's model server and the "
                             "cluster's repositories take none)")
        return cls(url if url.endswith("/") else url + "/")

    def url_of(self, name: str) -> str:
        return urllib.parse.urljoin(self.base, urllib.parse.quote(name))


def _open(url: str, offset: int = 0) -> urllib.response.addinfourl:
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        # A new opener each time: its ProxyHandler reads the proxy variables now (urlopen's shared one kept the
        # first call's).
        return urllib.request.build_opener().open(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ModelError(f"{url}: not found (HTTP 404)",
                             hint="check the package name and --elastic-models-url") from None
        if exc.code == 416 and offset:
            raise _RangeRefused() from None
        raise ModelError(f"{url}: the model server answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelError(f"{url}: cannot be downloaded ({reason})",
                         hint="check the network, the proxy variables (HTTPS_PROXY, NO_PROXY) and the URL") from None


class _RangeRefused(Exception):
    pass


def fetch_small(url: str, cap: int, what: str) -> bytes:
    """A whole file of at most `cap` bytes (metadata, vocabulary)."""
    with _open(url) as response:
        try:
            data = response.read(cap + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise ModelError(f"{url}: the download of the {what} was cut ({exc})",
                             hint="run the same command again") from None
    if len(data) > cap:
        raise ModelError(f"{url}: the {what} is larger than {cap} bytes; refusing it")
    return data


def fetch_definition(url: str, target: Path, size: int, sha256: str, *, progress: bool | None = None) -> None:
    """Download `url` into `target` (resuming from a partial `target`), then check it has exactly `size` bytes and
    the `sha256`; on a mismatch `target` is removed and both values are named."""
    have = target.stat().st_size if target.exists() else 0
    if have > size:
        target.unlink()
        have = 0
    with Progress("download", size, enabled=progress) as bar:
        bar.advance(have)
        if have < size:
            _stream(url, target, have, size, bar)
    actual_size, digest = target.stat().st_size, sha256_file(target)
    if actual_size != size or digest != sha256:
        target.unlink()
        got = f"more than {size}" if actual_size > size else str(actual_size)
        raise ModelError(
            f"{url}: does not match its metadata: size expected [{size}] but got [{got}]; sha256 expected "
            f"[{sha256}] but got [{digest if actual_size <= size else 'not computed'}]",
            hint="the model server or something between it and you changed the file; nothing was written")


def _stream(url: str, target: Path, offset: int, size: int, bar: Progress) -> None:
    try:
        response = _open(url, offset)
    except _RangeRefused:
        target.unlink()
        response, offset = _open(url), 0
    with response:
        start = _start_of(response, offset)
        total = _total_of(response, start)
        if total is not None and total != size:
            target.unlink(missing_ok=True)
            raise ModelError(f"{url}: does not match its metadata: size expected [{size}] but the server's file has "
                             f"[{total}] bytes", hint="the model server holds another file than its metadata "
                             "describes; nothing was written")
        mode = "ab" if start else "wb"
        written = start
        with open(target, mode) as out:
            if start == 0 and offset:
                bar.advance(-offset)  # the server sent the whole file again
            try:
                while chunk := response.read(CHUNK):
                    written += len(chunk)
                    out.write(chunk)
                    bar.advance(len(chunk))
                    if written > size:
                        break  # more than the metadata promised: the check after the download refuses it
            except (OSError, http.client.HTTPException) as exc:
                raise ModelError(f"{url}: the download was cut after {written} of {size} bytes ({exc})",
                                 hint="run the same command again: it resumes where the download stopped") from None
            finally:
                out.flush()
                os.fsync(out.fileno())
    if written < size:
        raise ModelError(f"{url}: the download was cut after {written} of {size} bytes",
                         hint="run the same command again: it resumes where the download stopped")


def _total_of(response: urllib.response.addinfourl, start: int) -> int | None:
    """The size of the whole file as the server states it (None when it does not say)."""
    if response.status == 206:
        total = _CONTENT_RANGE.match(response.headers.get("Content-Range", "")).group(3)  # type: ignore[union-attr]
        return int(total) if total != "*" else None
    length = response.headers.get("Content-Length")
    return int(length) + start if length and length.isdigit() else None


def _start_of(response: urllib.response.addinfourl, offset: int) -> int:
    """Where the body starts: `offset` for a 206 that says so, 0 for a 200 (a server that ignores Range)."""
    if response.status != 206:
        return 0
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != offset:
        raise ModelError(f"{response.url}: answered a resume request with the wrong range "
                         f"({response.headers.get('Content-Range')!r}, asked from byte {offset})")
    return offset
