"""The model repository (`xpack.ml.model_repository`): its bootstrap check, package locations and reads.

Owns what Elasticsearch's ml-package-loader plugin does with the repository setting, written from
MachineLearningPackageLoader (setting, default, bootstrap check and its texts) and ModelLoaderUtils
(resolvePackageLocation, file and HTTP input streams with their status rules, the 5+1 range split). The
Java exceptions those throw are modelled by `JavaError` (non-Elasticsearch exceptions, named as Java names
them) and `NotFound` (ResourceNotFoundException); packages.py turns them into Elasticsearch's answers.

The stand-in never leaves the machine: an HTTP repository on a host other than the loopback interface
(Elastic's default `https://ml-models.elastic.co` included) is answered as an air-gapped cluster sees it,
a connection that cannot be made (`java.net.UnknownHostException: <host>`).
"""

from __future__ import annotations

import http.client
import posixpath
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from .errors import EsError

DEFAULT_REPOSITORY = "https://ml-models.elastic.co"  # MachineLearningPackageLoader.DEFAULT_ML_MODELS_REPOSITORY
SCHEMES = ("http", "https", "file")
CHUNK_SIZE = 1024 * 1024  # ModelImporter.DEFAULT_CHUNK_SIZE
NUMBER_OF_STREAMS = 5  # ModelImporter.NUMBER_OF_STREAMS
VOCABULARY_LIMIT = 20 * 1024 * 1024  # ModelLoaderUtils.VOCABULARY_SIZE_LIMIT (20 MB)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class JavaError(Exception):
    """A Java exception that is not an ElasticsearchException: `name` is its class, fully qualified."""

    def __init__(self, name: str, message: str, cause: JavaError | None = None) -> None:
        super().__init__(f"{name}: {message}")
        self.name, self.message, self.cause = name, message, cause

    def __str__(self) -> str:  # Throwable.toString
        return f"{self.name}: {self.message}"

    def es_error(self) -> EsError:
        """As ElasticsearchException.generateThrowableXContent shows it: the simple class name in snake case."""
        simple = self.name.rsplit(".", 1)[-1]
        type_ = "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(simple))
        return EsError(500, type_, self.message, caused_by=self.cause.es_error() if self.cause else None)


class NotFound(Exception):
    """ResourceNotFoundException(`<uri> not found`), thrown by the file and HTTP readers."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"{uri} not found")

    def es_error(self) -> EsError:
        return EsError(404, "resource_not_found_exception", str(self))


def illegal_argument(message: str) -> JavaError:
    return JavaError("java.lang.IllegalArgumentException", message)


@dataclass(frozen=True)
class Uri:
    """A java.net.URI as far as the package loader uses one."""

    scheme: str
    authority: str
    path: str
    host: str = ""
    port: int | None = None

    def __str__(self) -> str:
        # A URI rebuilt by resolve() prints no `//` when its authority is empty: `file:/etc/x/models/a.pt`.
        return f"{self.scheme}:" + (f"//{self.authority}" if self.authority else "") + self.path


def parse_uri(text: str) -> Uri:
    split = urlsplit(text)
    return Uri(split.scheme, split.netloc, split.path, split.hostname or "", split.port)


def normalize(path: str) -> str:
    """URI.normalize on a path: `.` and `..` segments removed, a trailing `/` kept."""
    if not path:
        return path
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal + "/" if path.endswith("/") and normal != "/" else normal


def bootstrap_failure(repository: str, config_dir: Path, es_version: tuple[int, int, int]) -> str | None:
    """MachineLearningPackageLoader's bootstrap check (alwaysEnforce): the failure text, or None."""
    reason = _repository_problem(repository, config_dir)
    if reason is None:
        return None
    link = (f"https://www.elastic.co/guide/en/machine-learning/{es_version[0]}.{es_version[1]}/ml-nlp-elser.html"
            "#air-gapped-install")
    return (f"Found an invalid configuration for xpack.ml.model_repository. {reason}. See {link} "
            "for more information.")


def _repository_problem(repository: str, config_dir: Path) -> str | None:
    """validateModelRepository, in its order."""
    base = parse_uri(repository if repository.endswith("/") else repository + "/")
    config_uri = config_dir.resolve().as_uri() + "/"  # Path.toUri of an existing directory ends with `/`
    if not base.scheme:
        return 'xpack.ml.model_repository must contain a scheme, supported schemes are "http", "https", "file"'
    scheme = base.scheme.lower()
    if scheme not in SCHEMES:
        return ('xpack.ml.model_repository must be configured with one of the following schemes: "http", "https", '
                '"file"')
    if scheme == "file" and not normalize(base.path).startswith(parse_uri(config_uri).path):
        return ("If xpack.ml.model_repository is a file location, it must be placed below the configuration: "
                + config_uri)
    if "@" in base.authority:
        return "xpack.ml.model_repository does not support authentication"
    return None


def resolve(repository: str, artefact: str) -> Uri:
    """ModelLoaderUtils.resolvePackageLocation: the artefact under the repository, same scheme, same base path."""
    base = parse_uri(repository if repository.endswith("/") else repository + "/")
    base = Uri(base.scheme, base.authority, normalize(base.path), base.host, base.port)
    target = parse_uri(artefact)
    if not base.scheme:
        raise illegal_argument("Repository must contain a scheme")
    if target.scheme and target.scheme != base.scheme:
        raise illegal_argument("Illegal schema change in package location")
    path = normalize(target.path if target.path.startswith("/") else posixpath.join(base.path, target.path))
    if not path.startswith(base.path):
        raise illegal_argument("Illegal path in package location")
    return Uri(base.scheme, base.authority, path, base.host, base.port)


def is_file(uri: Uri) -> bool:
    return uri.scheme.lower() == "file"


def open_stream(uri: Uri, byte_range: tuple[int, int] | None = None) -> IO[bytes]:
    """getInputStreamFromModelRepository / getHttpOrHttpsInputStream: a stream, or the loader's exception."""
    scheme = uri.scheme.lower()
    if scheme == "file":
        return _open_file(uri)
    if scheme not in ("http", "https"):
        raise illegal_argument("unsupported scheme")
    return _open_http(uri, byte_range)


def _open_file(uri: Uri) -> IO[bytes]:
    path = Path(uri.path)
    if not path.exists():
        raise NotFound(str(uri))
    try:
        return open(path, "rb")
    except OSError as exc:
        raise JavaError("java.io.UncheckedIOException", f"java.io.IOException: {exc.strerror}") from None


def _open_http(uri: Uri, byte_range: tuple[int, int] | None) -> IO[bytes]:
    if uri.host not in _LOOPBACK:  # the stand-in is an air-gapped cluster
        cause = JavaError("java.net.UnknownHostException", uri.host)
        raise JavaError("java.io.UncheckedIOException", str(cause), cause)
    connection = _connection(uri)
    headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
    try:
        connection.request("GET", uri.path, headers=headers)
        response = connection.getresponse()
    except OSError:
        cause = JavaError("java.net.ConnectException", "Connection refused")
        raise JavaError("java.io.UncheckedIOException", str(cause), cause) from None
    status = response.status
    if status in (200, 206):
        return response  # type: ignore[return-value]
    connection.close()
    if status in (301, 302, 303):
        raise JavaError("java.lang.IllegalStateException", "redirects aren't supported yet")
    if status == 404:
        raise NotFound(str(uri))
    if status == 416:
        text = f"bytes={byte_range[0]}-{byte_range[1]}" if byte_range else "null"
        raise JavaError("java.lang.IllegalStateException", f"Invalid request range [{text}]")
    raise EsError(status, "status_exception", f"error during downloading {uri}. Got response code {status}")


def _connection(uri: Uri) -> http.client.HTTPConnection:
    port = uri.port
    if uri.scheme.lower() == "https":
        return http.client.HTTPSConnection(uri.host, port or 443, timeout=60, context=ssl.create_default_context())
    return http.client.HTTPConnection(uri.host, port or 80, timeout=60)


def read_chunk(stream: Any, size: int = CHUNK_SIZE) -> bytes:
    """What the chunkers read: up to `size` bytes, fewer only at the end of the stream."""
    chunks, got = [], 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


@dataclass(frozen=True)
class Range:
    start: int
    end: int  # inclusive
    first_part: int
    parts: int


def split(size: int, streams: int = NUMBER_OF_STREAMS, chunk: int = CHUNK_SIZE) -> list[Range]:
    """ModelLoaderUtils.split (the version with fewer ranges for small files): `streams` ranges of whole chunks,
    then one range for the final chunk. One chunk is a division by zero in that code, as Java raises it."""
    chunks = (size + chunk - 1) // chunk
    count = chunks if streams > chunks else streams + 1
    if count - 1 == 0:
        raise JavaError("java.lang.ArithmeticException", "/ by zero")
    base, remainder = (chunks - 1) // (count - 1), (chunks - 1) % (count - 1)
    ranges, start, first = [], 0, 0
    for i in range(count - 1):
        parts = base + 1 if i < remainder else base
        end = start + parts * chunk - 1
        ranges.append(Range(start, end, first, parts))
        start, first = end + 1, first + parts
    ranges.append(Range(start, min(size, start + base * chunk) - 1, first, 1))
    return ranges
