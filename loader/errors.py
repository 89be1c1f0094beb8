"""The error hierarchy of both sides. Each class is one exit code, so a script can tell failures apart.

Every error carries a short message that names the thing and the check, and an optional hint that says what
to do next. The CLI's single error boundary prints both and exits with the class's code.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One failed check on one file (or on the bundle as a whole when `path` is empty)."""

    path: str
    check: str
    detail: str

    def __str__(self) -> str:
        where = self.path or "bundle"
        return f"{where}: {self.check}: {self.detail}"


class EsbundleError(Exception):
    """Base class. `exit_code` tells the class of failure; `hint` the next step."""

    exit_code = 1
    label = "error"

    def __init__(self, message: str, *, hint: str | None = None, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = tuple(sorted(problems, key=lambda p: (p.path, p.check, p.detail)))

    def render(self) -> str:
        lines = [f"{self.label}: {self.message}"]
        lines += [f"  - {p}" for p in self.problems]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class UsageError(EsbundleError):
    """Bad options or arguments (same code as click's own usage errors)."""

    exit_code = 2
    label = "usage error"


class SignatureError(EsbundleError):
    """The envelope is missing or malformed, the signature does not verify, or the key is not trusted."""

    exit_code = 3
    label = "signature check failed"


class IntegrityError(EsbundleError):
    """A file's bytes differ from what the signed manifest says (size, sha256, decompressed content)."""

    exit_code = 4
    label = "integrity check failed"


class LayoutError(EsbundleError):
    """The bundle's structure is wrong: manifest unparsable, unsafe paths, missing or extra files."""

    exit_code = 5
    label = "layout check failed"


class PolicyError(EsbundleError):
    """Authentic and intact, but not acceptable here: expired, a downgrade, a cluster that cannot run it."""

    exit_code = 6
    label = "policy check failed"


class ClusterError(EsbundleError):
    """Elasticsearch could not be reached, refused a request, or answered differently than expected."""

    exit_code = 7
    label = "cluster error"


class IncompleteError(EsbundleError):
    """Everything given is correct, but some volumes of the bundle are still missing."""

    exit_code = 8
    label = "incomplete"


class ModelError(EsbundleError):
    """The source model cannot be exported: not a model, unsupported tokenizer, traced output differs."""

    exit_code = 9
    label = "model error"


class KeyFileError(EsbundleError):
    """A key file cannot be read, parsed or decrypted."""

    exit_code = 10
    label = "key error"


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected error",
    2: "usage error (bad option or argument)",
    3: "signature: missing or malformed envelope, bad signature, untrusted key",
    4: "integrity: a file's size or sha256 differs from the signed manifest, or it decompresses wrongly",
    5: "layout: manifest unparsable, unsafe path, missing, extra or special files",
    6: "policy: expired, downgrade, or a cluster that cannot run the bundle",
    7: "cluster: unreachable, refused a request, or answered wrongly",
    8: "incomplete: the volumes given are correct but some are missing",
    9: "model: the source model cannot be exported faithfully",
    10: "key: a key file cannot be read or decrypted",
}
