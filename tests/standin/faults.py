"""Fault injection for resilience tests: the `--fail PLAN` option.

PLAN is a comma-separated list of rules (see README.md):

    part-status=CODE@FRACTION   answer that fraction of part uploads with CODE (503, 429, 500, ...)
                                without storing them; repeatable, rules are tried in order
    seed=N                      seed for the fractions (default 0)
    close-on-part=N             the first time part N arrives, read half its body and drop the
                                connection without storing or answering; repeatable
    delay=SECONDS               added before every response
    exit-after-parts=N          exit (status 3) right after acknowledging the N-th stored part
    crash-after-parts=N         exit (status 3) right after storing the N-th part, before answering
    start-delay=SECONDS         the native process takes this long to load a model at `_start`
    pause-at-part=N             the first time part N of a model arrives, read it whole, then hold it
                                (nothing stored, nothing answered) until released; repeatable
    pause-start=MODEL_ID        the first `_start` of that model (`*`: of every model) holds the native
                                load, so the deployment stays `starting`, until released; repeatable

Draws are deterministic per (seed, model, part, attempt number), not per arrival order, so a plan
injects the same faults whether parts are sent one after the other or in parallel.

Pauses turn timing windows into events: a test waits until `GET /_standin/pauses` lists the hold,
acts (kills a client, edits a file, ...), then `POST /_standin/release`s it (or never does).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .errors import EsError


class PlanError(ValueError):
    """A --fail plan that does not parse; the message names the rule."""


@dataclass
class Hold:
    """One request held by a pause rule, until a test releases it."""

    number: int
    point: str  # "part" or "start"
    model_id: str
    part: int | None = None
    deployment_id: str | None = None
    released: threading.Event = field(default_factory=threading.Event, repr=False)

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {"hold": self.number, "point": self.point, "model_id": self.model_id}
        if self.part is not None:
            body["part"] = self.part
        if self.deployment_id is not None:
            body["deployment_id"] = self.deployment_id
        return body

    def matches(self, point: str | None, model_id: str | None, part: int | None) -> bool:
        return ((point is None or self.point == point) and (model_id is None or self.model_id == model_id)
                and (part is None or self.part == part))


@dataclass
class FaultPlan:
    part_status: list[tuple[int, float]] = field(default_factory=list)
    seed: int = 0
    close_on_parts: set[int] = field(default_factory=set)
    delay: float = 0.0
    exit_after_parts: int | None = None
    crash_after_parts: int | None = None
    start_delay: float = 0.0
    pause_parts: set[int] = field(default_factory=set)
    pause_starts: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _attempts: Counter[tuple[str, int]] = field(default_factory=Counter, repr=False)
    _closed: set[tuple[str, int]] = field(default_factory=set, repr=False)
    _stored: int = 0
    _paused: set[tuple[str, str, int | None]] = field(default_factory=set, repr=False)
    _held: list[Hold] = field(default_factory=list, repr=False)
    _hold_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    @classmethod
    def parse(cls, text: str | None) -> FaultPlan:
        plan = cls()
        for rule in (r.strip() for r in (text or "").split(",")):
            if not rule:
                continue
            key, sep, value = rule.partition("=")
            if not sep:
                raise PlanError(f"fault rule [{rule}] is not KEY=VALUE")
            try:
                if key == "part-status":
                    code, at, fraction = value.partition("@")
                    plan.part_status.append((int(code), float(fraction) if at else 1.0))
                elif key == "seed":
                    plan.seed = int(value)
                elif key == "close-on-part":
                    plan.close_on_parts.add(int(value))
                elif key == "delay":
                    plan.delay = float(value)
                elif key == "exit-after-parts":
                    plan.exit_after_parts = int(value)
                elif key == "crash-after-parts":
                    plan.crash_after_parts = int(value)
                elif key == "start-delay":
                    plan.start_delay = float(value)
                elif key == "pause-at-part":
                    plan.pause_parts.add(int(value))
                elif key == "pause-start":
                    if not value.strip():
                        raise PlanError(f"fault rule [{rule}] names no model (use * for every model)")
                    plan.pause_starts.add(value.strip())
                else:
                    raise PlanError(f"unknown fault rule [{key}]")
            except ValueError as exc:
                if isinstance(exc, PlanError):
                    raise
                raise PlanError(f"fault rule [{rule}] has a bad value") from exc
        return plan

    def _draw(self, model_id: str, part: int, attempt: int, rule: int) -> float:
        digest = hashlib.sha256(f"{self.seed}:{model_id}:{part}:{attempt}:{rule}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def part_arrived(self, model_id: str, part: int) -> tuple[bool, EsError | None]:
        """Decide this attempt's fate: (drop the connection?, error to answer instead of storing)."""
        with self._lock:
            self._attempts[(model_id, part)] += 1
            attempt = self._attempts[(model_id, part)]
            if part in self.close_on_parts and (model_id, part) not in self._closed:
                self._closed.add((model_id, part))
                return True, None
        for index, (status, fraction) in enumerate(self.part_status):
            if self._draw(model_id, part, attempt, index) < fraction:
                return False, injected_error(status)
        return False, None

    def part_stored(self) -> str | None:
        """Count a stored part; `crash` (exit before answering) or `exit` (after) when due."""
        with self._lock:
            self._stored += 1
            if self.crash_after_parts is not None and self._stored >= self.crash_after_parts:
                return "crash"
            if self.exit_after_parts is not None and self._stored >= self.exit_after_parts:
                return "exit"
        return None


    # --- pauses ---------------------------------------------------------------------------------

    def hold_part(self, model_id: str, part: int) -> None:
        """Block the calling request thread while `pause-at-part` holds this part (first arrival only)."""
        if part in self.pause_parts:
            self._hold("part", model_id, part=part)

    def hold_start(self, model_id: str, deployment_id: str) -> None:
        """Block the native load of a `_start` while `pause-start` holds it (first start of the model only)."""
        if model_id in self.pause_starts or "*" in self.pause_starts:
            self._hold("start", model_id, deployment_id=deployment_id)

    def _hold(self, point: str, model_id: str, part: int | None = None, deployment_id: str | None = None) -> None:
        with self._lock:
            if (point, model_id, part) in self._paused:
                return
            self._paused.add((point, model_id, part))
            hold = Hold(next(self._hold_numbers), point, model_id, part, deployment_id)
            self._held.append(hold)
        # No time limit: a hold lasts until a test releases it or the stand-in stops (then it simply ends).
        hold.released.wait()

    def held(self) -> list[dict[str, Any]]:
        """The requests held now, in the order they were held."""
        with self._lock:
            return [hold.describe() for hold in self._held]

    def release(self, point: str | None = None, model_id: str | None = None,
                part: int | None = None) -> list[dict[str, Any]]:
        """Let the matching held requests go on (all of them without a filter); returns what was released."""
        with self._lock:
            chosen = [hold for hold in self._held if hold.matches(point, model_id, part)]
            self._held = [hold for hold in self._held if not hold.matches(point, model_id, part)]
        for hold in chosen:
            hold.released.set()
        return [hold.describe() for hold in chosen]


def injected_error(status: int) -> EsError:
    """Errors as Elasticsearch sends them under load, for the status codes a plan names."""
    if status == 429:
        return EsError(429, "es_rejected_execution_exception",
                       "rejected execution of coordinating operation [stand-in fault injection]")
    if status == 503:
        return EsError(503, "cluster_block_exception",
                       "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];")
    return EsError(status, "status_exception", f"stand-in injected fault [{status}]")
