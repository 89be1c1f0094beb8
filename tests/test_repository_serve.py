"""`esbundle repository serve`: the real command as a process, answering real HTTP as the cluster's downloader needs.

The package is made here (tests/packages.py), published by a local model server and exported by the real export
(tests/package_bundles.py); every body is compared with the file the test published. The stand-in imports the
package from the served URL over its HTTP route (5 parallel ranges, then the last chunk). A part changed on disk
after verification must never be served: the response is cut before its bytes.
"""
from __future__ import annotations

import re
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from bundler.keys import KeyPair
from loader.repository.ranges import answer
from tests.conftest import Keys, MakeBundle, RunCli
from tests.package_bundles import PackageBundle, export_package, publisher_keys
from tests.serve_process import Served, read_reply, start_serve
from tests.standin.fixture import DEADLINE, read_line, start_standin

MIB = 1 << 20
NAME = "big-e5"
PT = f"{NAME}.pt"


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return publisher_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, publisher: KeyPair) -> PackageBundle:
    # Above 6 MiB: the cluster's downloader splits it into 5 ranges plus the last 1 MiB chunk. 1 MiB parts.
    made = export_package(tmp_path_factory.mktemp("big"), NAME, publisher, padding=7 << 20)
    assert len(made.files[PT]) > 7 * MIB
    return made


@pytest.fixture(scope="module")
def served(big: PackageBundle, publisher: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_serve(big.bundle, publisher.public_path, tmp_path_factory.mktemp("serve") / "stderr.log")
    yield server
    server.stop()


def test_the_range_answers_follow_rfc_9110() -> None:
    size = 10
    cases = {None: (200, 0, 9), "bytes=0-3": (206, 0, 3), "bytes=7-": (206, 7, 9), "bytes=-3": (206, 7, 9),
             "bytes=-30": (206, 0, 9), "bytes=8-30": (206, 8, 9), "bytes=10-": (416, 0, -1),
             "bytes=10-12": (416, 0, -1), "bytes=-0": (416, 0, -1), "bytes=5-2": (200, 0, 9),
             "bytes=0-1,4-5": (200, 0, 9), "items=0-1": (200, 0, 9), "bytes=": (200, 0, 9), "bytes=-": (200, 0, 9)}
    assert {header: (a.status, a.first, a.last) for header in cases for a in [answer(header, size)]} == cases
    assert answer("bytes=10-", size).content_range(size) == "bytes */10"
    assert answer("bytes=2-4", size).content_range(size) == "bytes 2-4/10"


def test_the_ready_lines_name_the_url_the_setting_and_the_model(served: Served) -> None:
    host, port = served.address
    assert served.url == f"http://127.0.0.1:{port}/" and host == "127.0.0.1"
    assert served.process.stdout is not None
    lines = [read_line(served.process.stdout, 10) for _ in range(3)]
    assert lines[0] == f"model     .{NAME}: {NAME}.metadata.json, {NAME}.vocab.json, {PT}\n".encode()
    assert lines[1] == f"xpack.ml.model_repository: {served.url}\n".encode()
    assert lines[2].startswith(b"the elected master node downloads from here")  # type: ignore[union-attr]


def test_plain_gets_return_the_files_byte_for_byte(served: Served, big: PackageBundle) -> None:
    connection = served.connect()  # one keep-alive connection for every request
    try:
        for name, data in big.files.items():
            connection.request("GET", f"/{name}")
            reply = read_reply(connection.getresponse())
            assert (reply.status, reply.body, reply.short) == (200, data, False), name
            assert reply.headers["Content-Length"] == str(len(data)) and reply.headers["Content-Range"] is None
            assert reply.headers["Accept-Ranges"] == "bytes"
            connection.request("HEAD", f"/{name}")
            head = read_reply(connection.getresponse())
            assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", str(len(data)))
    finally:
        connection.close()


def test_single_ranges_are_answered_206_with_their_bytes(served: Served, big: PackageBundle) -> None:
    data = big.files[PT]
    size = len(data)
    for first, last in [(0, 99), (MIB - 10, MIB + 9), (3 * MIB, 5 * MIB - 1), (size - 1, size - 1)]:
        reply = served.request(f"/{PT}", headers={"Range": f"bytes={first}-{last}"})
        assert (reply.status, reply.headers["Content-Range"]) == (206, f"bytes {first}-{last}/{size}")
        assert reply.body == data[first:last + 1] and reply.headers["Content-Length"] == str(last - first + 1)
    for wanted, first in [(f"bytes={size - 1000}-", size - 1000), ("bytes=-500", size - 500),
                          (f"bytes={size - 10}-{size + 100}", size - 10)]:
        reply = served.request(f"/{PT}", headers={"Range": wanted})
        assert (reply.status, reply.headers["Content-Range"]) == (206, f"bytes {first}-{size - 1}/{size}")
        assert reply.body == data[first:]
    for wanted in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}"):
        reply = served.request(f"/{PT}", headers={"Range": wanted})
        assert (reply.status, reply.headers["Content-Range"]) == (416, f"bytes */{size}")
    for ignored in ("bytes=0-1,5-6", "bytes=9-5"):  # several ranges, an invalid one: the whole file
        reply = served.request(f"/{PT}", headers={"Range": ignored})
        assert (reply.status, reply.body) == (200, data)
    metadata = big.files[f"{NAME}.metadata.json"]
    reply = served.request(f"/{NAME}.metadata.json", headers={"Range": "bytes=5-"})
    assert (reply.status, reply.body) == (206, metadata[5:])


@pytest.mark.parametrize("path", [
    "/", "/..", "/../big-e5.pt", "/%2e%2e/big-e5.pt", "//big-e5.pt", "/big-e5.pt/", "/BIG-E5.PT", "/big-e5",
    "/missing.json", "/missing.json?x=1", "/big-e5.pt?download=1", "/manifest.json", "/manifest.dsse.json",
    "/definition/part-00000.zst", "/package/metadata.json", "/vocabulary.json.zst", "http://127.0.0.1/big-e5.pt",
])
def test_nothing_else_is_reachable(served: Served, path: str) -> None:
    for method in ("GET", "HEAD"):
        reply = served.request(path, method=method)
        assert reply.status == 404, (method, path)
        assert reply.headers["Location"] is None
        assert reply.body == (b"not found\n" if method == "GET" else b"")  # no listing, no name


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
def test_other_methods_are_not_allowed(served: Served, method: str) -> None:
    reply = served.request(f"/{PT}", method=method, body=b"x" * 100 if method in ("POST", "PUT") else None)
    assert (reply.status, reply.headers["Allow"]) == (405, "GET, HEAD")


def test_parallel_requests_are_answered_at_once(served: Served, big: PackageBundle) -> None:
    """Six responses of the whole 7 MiB file all begin before any body is read: far more than the sockets can
    buffer, so a server answering one request at a time would leave the later ones waiting (and fail here)."""
    connections = [served.connect() for _ in range(6)]
    try:
        for connection in connections:
            connection.request("GET", f"/{PT}")
        responses = [connection.getresponse() for connection in connections]
        assert [r.status for r in responses] == [200] * 6
        assert all(read_reply(r).body == big.files[PT] for r in responses)
    finally:
        for connection in connections:
            connection.close()


def test_the_stand_in_imports_the_package_over_the_http_route(served: Served, big: PackageBundle,
                                                             tmp_path: Path) -> None:
    ranged = re.compile(rf'"GET /{re.escape(PT)} HTTP/1.1" 206 bytes=\d+-\d+$', re.MULTILINE)
    before = len(ranged.findall(served.stderr()))
    server = start_standin(tmp_path / "data", model_repository=served.url)
    try:
        stored = server.http("PUT", f"/_ml/trained_models/.{NAME}?wait_for_completion=true",
                             body={"input": {"field_names": ["text_field"]}}, timeout=120)
        assert stored.status == 200, stored.body[:500]
        read_back = server.http("GET", f"/_standin/trained_models/.{NAME}/definition")
        assert read_back.status == 200, read_back.body[:300]
        assert read_back.body == big.files[PT]
    finally:
        server.kill()
    assert len(ranged.findall(served.stderr())) - before == 6  # 5 parallel ranges, then the last chunk


def flip_byte(part: Path) -> str:
    """The same stored size, one byte changed: caught by the stored sha256."""
    stored = bytearray(part.read_bytes())
    stored[len(stored) // 2] ^= 0xFF
    part.write_bytes(bytes(stored))
    return "stored sha256"


def forge(part: Path) -> str:
    """A well-formed zstd frame of 1 MiB of other bytes: caught by the stored size before any decompression."""
    part.write_bytes(zstandard.ZstdCompressor(write_content_size=True).compress(b"A" * MIB))
    return "stored size"


@pytest.mark.parametrize("change", [flip_byte, forge])
def test_a_part_changed_after_verification_is_never_served(big: PackageBundle, publisher: KeyPair, tmp_path: Path,
                                                           change: Callable[[Path], str]) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(big.bundle, bundle)
    server = start_serve(bundle, publisher.public_path, tmp_path / "stderr.log")
    data, first = big.files[PT], 2 * MIB + 100
    try:
        check = change(bundle / "definition" / "part-00003.zst")  # the .pt's bytes 3 MiB .. 4 MiB
        cut = server.request(f"/{PT}", headers={"Range": f"bytes={first}-{4 * MIB + 99}"})
        assert (cut.status, cut.headers["Content-Length"], cut.short) == (206, str(2 * MIB), True)
        assert cut.body == data[first:3 * MIB]  # every good byte before the part, none of it or after it
        whole = server.request(f"/{PT}")
        assert (whole.status, whole.short, whole.body) == (200, True, data[:3 * MIB])
        inside = server.request(f"/{PT}", headers={"Range": f"bytes={3 * MIB + 5}-{3 * MIB + 100}"})
        assert inside.status == 500 and inside.body == b"refused: a bundle file changed since it was verified\n"
        assert all(b"A" * 64 not in reply.body for reply in (cut, whole, inside))
        assert server.request(f"/{PT}", headers={"Range": "bytes=0-99"}).body == data[:100]  # the rest still served
    finally:
        assert server.stop(signal.SIGINT) == 0
    log = server.stderr()
    refusals = [line for line in log.splitlines() if line.startswith("REFUSED ")]
    assert len(refusals) == 3, log
    assert all(f"definition/part-00003.zst: {check}: the bytes on the medium differ from the signed manifest"
               in line for line in refusals), refusals
    assert refusals[0].startswith(f"REFUSED {PT} bytes {first}-{4 * MIB + 99} to 127.0.0.1: ")
    assert refusals[0].endswith(f"sent {MIB - 100} of {2 * MIB} bytes, then closed the connection")
    assert refusals[2].endswith("answered 500 instead, nothing of it sent")
    assert log.rstrip().endswith("stopped (SIGINT)")


def test_sigterm_stops_it_cleanly(big: PackageBundle, publisher: KeyPair, tmp_path: Path) -> None:
    server = start_serve(big.bundle, publisher.public_path, tmp_path / "stderr.log")
    assert server.request(f"/{NAME}.metadata.json").status == 200
    assert server.stop(signal.SIGTERM) == 0
    assert server.stderr().rstrip().endswith("stopped (SIGTERM)")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=DEADLINE).close()


def test_a_bundle_of_another_model_is_not_served(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    result = run_cli("repository", "serve", make_bundle(), "--trusted-key", keys.pub, "--port", "0")
    assert result.exit_code == 2, result.output
    assert "not one of Elastic's packaged models" in result.stderr and "nothing is served" in result.stderr
    assert "serving" not in result.stdout
