"""The skip gate: a test run fails when any test was skipped, xfailed or xpassed that is not on the allowed list.

A skip hides a test that did not run; it is allowed only for something outside the project's control, and only
when `tests/allowed_skips.txt` lists it with its reason (one `NODE-ID-OR-PREFIX -- reason` a line, `#` comments).
Skips at collection (a module-level `pytest.skip`), at setup (a `skipif` mark, a skipping fixture), in the test
body (`pytest.skip`), and xfail marks all count. The run always prints the allowed list and, when the gate fails,
each test that was skipped without being on it. Registered by `tests/conftest.py`; the list's path is the ini
option `allowed_skips` (relative to the rootdir).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEFAULT_LIST = "tests/allowed_skips.txt"
SEPARATOR = " -- "


@dataclass(frozen=True)
class Allowed:
    prefix: str
    reason: str

    def covers(self, nodeid: str) -> bool:
        # A prefix ends at a node boundary: `tests/test_a.py::test_x` covers `test_x[1]` and not `test_x2`.
        if nodeid == self.prefix or self.prefix.endswith(("/", "::", "[")):
            return nodeid.startswith(self.prefix)
        return nodeid.startswith(self.prefix) and nodeid[len(self.prefix)] in "/:["


def parse_allowed(text: str, source: str) -> list[Allowed]:
    """The entries of an allowed-skips file; a line without ` -- ` and a reason is a usage error, naming the line."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        prefix, separator, reason = line.partition(SEPARATOR)
        if not separator or not prefix.strip() or not reason.strip():
            raise pytest.UsageError(f"{source}:{number}: an allowed skip is `NODE-ID-OR-PREFIX -- reason`: {raw!r}")
        entries.append(Allowed(prefix.strip(), reason.strip()))
    return entries


@dataclass
class Skipped:
    nodeid: str
    outcome: str  # skipped, xfailed or xpassed
    reason: str


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        return str(wasxfail) or "xfail"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@dataclass(eq=False)  # a plugin must be hashable
class SkipGate:
    path: Path
    shown: str
    allowed: list[Allowed]
    seen: dict[str, Skipped] = field(default_factory=dict)

    def _note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if hasattr(report, "wasxfail"):  # an xfail mark, met (xfailed) or not (xpassed, unless strict: failed)
            outcome = "xfailed" if report.skipped else "xpassed" if report.passed else ""
        else:
            outcome = "skipped" if report.skipped else ""
        if outcome and report.nodeid not in self.seen:
            self.seen[report.nodeid] = Skipped(report.nodeid, outcome, _reason(report))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def unexpected(self) -> list[Skipped]:
        return [s for s in self.seen.values() if not any(a.covers(s.nodeid) for a in self.allowed)]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected() and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        write = terminalreporter.write_line
        if not self.allowed:
            write(f"allowed skips ({self.shown}): none")
        else:
            write(f"allowed skips ({self.shown}): {len(self.allowed)}")
            for entry in self.allowed:
                used = any(entry.covers(s.nodeid) for s in self.seen.values())
                write(f"  {entry.prefix} -- {entry.reason}{'' if used else '  (not used in this run)'}")
        unexpected = self.unexpected()
        if unexpected:
            terminalreporter.write_sep("=", f"skip gate: {len(unexpected)} not on {self.shown}; the run fails",
                                       red=True, bold=True)
            for s in unexpected:
                write(f"{s.outcome.upper()} {s.nodeid} - {s.reason}", red=True)
            write(f"A skip is allowed only for something outside the project's control: fix the cause, or add "
                  f"`NODE-ID-OR-PREFIX -- reason` to {self.shown}.")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("allowed_skips", f"file of tests allowed to skip or xfail (default {DEFAULT_LIST})",
                  default=DEFAULT_LIST)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.has_plugin("skip-gate"):
        return
    path = config.rootpath / str(config.getini("allowed_skips"))
    try:
        shown = str(path.relative_to(config.rootpath))
    except ValueError:
        shown = str(path)
    allowed = parse_allowed(path.read_text(encoding="utf-8"), shown) if path.is_file() else []
    if not path.is_file():
        shown += ", missing"
    config.pluginmanager.register(SkipGate(path, shown, allowed), "skip-gate")
