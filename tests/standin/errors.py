"""Elasticsearch's error model, as the stand-in answers it.

Owns the one exception type every handler raises (`EsError`) and the constructors for the error
kinds Elasticsearch uses on the trained-model API. Texts passed in here are Elasticsearch's own
(see tests/standin/README.md for where each comes from); nothing in this module invents wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class EsError(Exception):
    """An error answered with Elasticsearch's body shape.

    `extra` carries the additional fields Elasticsearch puts next to `type` and `reason` (for
    example `header` on 401s, `license.expired.feature` on licence refusals); `caused_by` is the
    nested cause chain, outermost first.
    """

    def __init__(
        self,
        status: int,
        type_: str,
        reason: str,
        *,
        extra: dict[str, Any] | None = None,
        caused_by: EsError | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status} {type_}: {reason}")
        self.status = status
        self.type = type_
        self.reason = reason
        self.extra = extra or {}
        self.caused_by = caused_by
        self.headers = headers or []

    def _cause(self) -> dict[str, Any]:
        cause: dict[str, Any] = {"type": self.type, "reason": self.reason, **self.extra}
        if self.caused_by is not None:
            cause["caused_by"] = self.caused_by._cause()
        return cause

    def body(self) -> dict[str, Any]:
        """`{"error":{"root_cause":[...],"type":T,"reason":R,...},"status":N}`.

        Elasticsearch's root cause of a wrapping exception that is not itself an
        ElasticsearchException (x_content_parse_exception, media_type_header_exception) is the
        outer exception, so root_cause repeats the outer type and reason without the chain.
        """
        root = {"type": self.type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [root], **self._cause()}, "status": self.status}


def validation(messages: Iterable[str]) -> EsError:
    """ActionRequestValidationException: numbered messages, each closed by `;`."""
    numbered = "".join(f"{i}: {m};" for i, m in enumerate(messages, start=1))
    return EsError(400, "action_request_validation_exception", f"Validation Failed: {numbered}")


def bad_request(reason: str) -> EsError:
    """ExceptionsHelper.badRequestException / ElasticsearchStatusException(BAD_REQUEST)."""
    return EsError(400, "status_exception", reason)


def illegal_argument(reason: str) -> EsError:
    return EsError(400, "illegal_argument_exception", reason)


def not_found(reason: str) -> EsError:
    return EsError(404, "resource_not_found_exception", reason)


def already_exists(reason: str) -> EsError:
    # Elasticsearch answers 400, not 409, for an existing trained model, vocabulary or part.
    return EsError(400, "resource_already_exists_exception", reason)


def conflict(reason: str) -> EsError:
    return EsError(409, "status_exception", reason)


def server_error(reason: str) -> EsError:
    return EsError(500, "status_exception", reason)


def parse_error(location: tuple[int, int], message: str, caused_by: EsError | None = None) -> EsError:
    """XContentParseException: the reason is prefixed with `[line:column]`."""
    line, column = location
    return EsError(400, "x_content_parse_exception", f"[{line}:{column}] {message}", caused_by=caused_by)


def body_required() -> EsError:
    return EsError(400, "parse_exception", "request body is required")


def license_non_compliant() -> EsError:
    return EsError(
        403,
        "security_exception",
        "current license is non-compliant for [ml]",
        extra={"license.expired.feature": "ml"},
    )


def not_emulated(what: str) -> EsError:
    """The stand-in's own answer for an Elasticsearch feature it deliberately does not emulate.

    Not an Elasticsearch error: status 501 (Elasticsearch never answers it on these APIs) and a type
    outside Elasticsearch's `*_exception` names, so no client or test can mistake it for a cluster's
    refusal.
    """
    return EsError(501, "standin_not_emulated", f"the Elasticsearch stand-in does not emulate {what}")


def model_not_found(model_id: str) -> EsError:
    return not_found(f"Could not find trained model [{model_id}]")


def levenshtein_similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance.getDistance: 1 - edits / max(len), as the suggester scores."""
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def unknown_field_message(parser_name: str, field: str, candidates: Iterable[str]) -> str:
    """ObjectParser's unknown-field text, with SuggestingErrorOnUnknown's `did you mean`.

    Candidates scoring above 0.7 are suggested, best first, ties by name.
    """
    scored = [(levenshtein_similarity(field, c), c) for c in candidates]
    matches = [c for score, c in sorted(scored, key=lambda sc: (-sc[0], sc[1])) if score > 0.7]
    message = f"[{parser_name}] unknown field [{field}]"
    if len(matches) == 1:
        message += f" did you mean [{matches[0]}]?"
    elif matches:
        message += f" did you mean any of [{', '.join(matches)}]?"
    return message
