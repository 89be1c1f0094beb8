"""The error hierarchy of both sides. Each class is one exit code, so a script can tell failures apart.

Every error carries a short message that names the thing and the check, and an optional hint that says what
to do next. Callers that know more (which bundle was checked, what did not happen because of the failure, how to
resume) add it as data with `add_context`; it is rendered once, by `statement` and `render`. The CLI's single
error boundary prints the rendering and exits with the class's code. The first line of each class's docstring,
up to its colon, is what the exit code means (the table in `--help`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


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
    """unexpected error: a bug, or a failure nothing here anticipated."""

    exit_code: ClassVar[int] = 1
    label: ClassVar[str] = "error"

    def __init__(self, message: str, *, hint: str | None = None, problems: Sequence[Problem] = (),
                 outcome: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = tuple(sorted(problems, key=lambda p: (p.path, p.check, p.detail)))
        self.outcome = outcome  # what did not happen because of this error ("nothing was uploaded")
        self.subject: str | None = None  # the thing that was being checked, when the message does not name it
        self.next_steps: list[str] = []

    def add_context(self, *, subject: str | None = None, outcome: str | None = None,
                    next_step: str | None = None) -> EsbundleError:
        """Add what the caller knows and the raiser did not; what is set already is kept."""
        self.subject = self.subject or subject
        self.outcome = self.outcome or outcome
        if next_step:
            self.next_steps.append(next_step)
        return self

    @property
    def statement(self) -> str:
        """The one line that says what failed, as printed and as recorded in receipts and `--json`."""
        text = f"{self.subject}: {self.message}" if self.subject else self.message
        if self.outcome:
            # A whole sentence starts anew; a clause continues the message.
            text += (". " if self.outcome[0].isupper() else "; ") + self.outcome
        return text

    @property
    def advice(self) -> str | None:
        return "; ".join(h for h in (self.hint, *self.next_steps) if h) or None

    def lines(self) -> list[str]:
        """What the error boundary prints, one line each (a message never adds a line of its own)."""
        lines = [f"{self.label}: {self.statement}"]
        lines += [f"  - {p}" for p in self.problems]
        if self.advice:
            lines.append(f"hint: {self.advice}")
        return lines


class UsageError(EsbundleError):
    """usage error (bad option or argument): the same code as click's own usage errors."""

    exit_code = 2
    label = "usage error"


class SignatureError(EsbundleError):
    """signature: missing or malformed envelope, bad signature, untrusted key."""

    exit_code = 3
    label = "signature check failed"


class NoTrustedKeyError(SignatureError):
    """signature: no trusted public key was given, so nothing can be authenticated."""


class UntrustedSignerError(SignatureError):
    """signature: the bundle is signed by a key that is not among the trusted ones."""


class IntegrityError(EsbundleError):
    """integrity: a file's size or sha256 differs from the signed manifest, or it decompresses wrongly."""

    exit_code = 4
    label = "integrity check failed"


class LayoutError(EsbundleError):
    """layout: manifest unparsable, unsafe path, missing, extra or special files."""

    exit_code = 5
    label = "layout check failed"


class PolicyError(EsbundleError):
    """policy: expired, downgrade, or a cluster that cannot run the bundle."""

    exit_code = 6
    label = "policy check failed"


class ClusterError(EsbundleError):
    """cluster: unreachable, refused a request, or answered wrongly."""

    exit_code = 7
    label = "cluster error"


class IncompleteError(EsbundleError):
    """incomplete: the volumes given are correct but some are missing."""

    exit_code = 8
    label = "incomplete"


class ModelError(EsbundleError):
    """model: the source model cannot be exported faithfully."""

    exit_code = 9
    label = "model error"


class KeyFileError(EsbundleError):
    """key: a key file cannot be read or decrypted."""

    exit_code = 10
    label = "key error"


class IndexUnreachableError(EsbundleError):
    """index: the package index could not be reached (network, proxy, certificates) while building the wheelhouse."""

    exit_code = 11
    label = "package index unreachable"


def _meaning(error: type[EsbundleError]) -> str:
    return (error.__doc__ or "").strip().splitlines()[0].rstrip(".")


# Exit code -> what it means, from the classes themselves (a subclass shares its parent's code).
EXIT_CODES: dict[int, str] = {0: "success"} | {
    error.exit_code: _meaning(error) for error in (EsbundleError, UsageError, SignatureError, IntegrityError,
                                                   LayoutError, PolicyError, ClusterError, IncompleteError,
                                                   ModelError, KeyFileError, IndexUnreachableError)}
