"""The skip gate (tests/skip_gate.py), run on small suites of its own with pytester, as .ci/run runs pytest
(-q -p no:cacheprovider): a skip or xfail not on the allowed list fails the run and is named; a listed one passes,
and the list is printed either way."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import skip_gate
from tests.skip_gate import Allowed, parse_allowed

pytest_plugins = ["pytester"]

SUITE = """
import sys
import pytest

def test_runs():
    pass

@pytest.mark.skipif(sys.platform != "nowhere", reason="only on nowhere")
def test_marked():
    pass

def test_skips_itself():
    pytest.skip("the network is down")

@pytest.mark.xfail(reason="known bug")
def test_expected_to_fail():
    assert False
"""


def run(pytester: pytest.Pytester, allowed: str | None, *args: str) -> pytest.RunResult:
    if allowed is not None:
        pytester.makefile(".txt", allowed_skips=allowed)
    return pytester.runpytest("-q", "-p", "no:cacheprovider", "-o", "allowed_skips=allowed_skips.txt", *args,
                              plugins=[skip_gate])


def test_a_skip_not_on_the_list_fails_the_run_and_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "# nothing allowed\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "allowed skips (allowed_skips.txt): none",
        "*skip gate: 3 not on allowed_skips.txt; the run fails*",
        "SKIPPED test_suite.py::test_marked - only on nowhere",
        "SKIPPED test_suite.py::test_skips_itself - the network is down",
        "XFAILED test_suite.py::test_expected_to_fail - known bug",
    ])
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)


def test_listed_skips_pass_and_the_list_is_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "# header\n\ntest_suite.py::test_marked -- only on nowhere\n"
                           "test_suite.py::test_skips_itself -- needs the network\n"
                           "test_suite.py::test_expected -- a prefix that ends inside a name covers nothing\n"
                           "test_suite.py::test_expected_to_fail -- upstream bug 123\n")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines([
        "allowed skips (allowed_skips.txt): 4",
        "  test_suite.py::test_marked -- only on nowhere",
        "  test_suite.py::test_skips_itself -- needs the network",
        "  test_suite.py::test_expected -- a prefix that ends inside a name covers nothing  (not used in this run)",
        "  test_suite.py::test_expected_to_fail -- upstream bug 123",
    ])
    result.stdout.no_fnmatch_line("*skip gate*")


def test_a_whole_file_skipped_at_collection_fails_unless_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_optional="""
        import pytest
        pytest.importorskip("no_such_module_anywhere")

        def test_never_collected():
            pass
    """, test_other="def test_ok():\n    pass\n")  # a run of nothing but a skipped module is pytest's exit 5
    failing = run(pytester, "")
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines(["SKIPPED test_optional.py - could not import 'no_such_module_anywhere'*"])
    listed = run(pytester, "test_optional.py -- an optional module this machine cannot have\n")
    assert listed.ret == pytest.ExitCode.OK, listed.stdout.str()


def test_an_xpass_counts_and_a_failure_keeps_its_own_exit_code(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mixed="""
        import pytest

        @pytest.mark.xfail(reason="was broken")
        def test_fixed_meanwhile():
            pass

        def test_broken():
            assert False
    """)
    result = run(pytester, None)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["allowed skips (allowed_skips.txt, missing): none",
                                 "XPASSED test_mixed.py::test_fixed_meanwhile - was broken"])


def test_a_clean_run_passes_and_still_prints_the_list(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_clean="def test_ok():\n    pass\n")
    result = run(pytester, "")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["allowed skips (allowed_skips.txt): none", "1 passed*"])


def test_an_entry_without_a_reason_is_refused() -> None:
    assert parse_allowed("# c\n\ntests/a.py::t -- why\n", "f") == [Allowed("tests/a.py::t", "why")]
    for bad in ("tests/a.py::t\n", "tests/a.py::t -- \n", " -- why\n"):
        with pytest.raises(pytest.UsageError, match="f:1: an allowed skip is"):
            parse_allowed(bad, "f")


def test_prefixes_end_at_a_node_boundary() -> None:
    assert Allowed("tests/test_a.py", "r").covers("tests/test_a.py::test_x")
    assert Allowed("tests/", "r").covers("tests/test_a.py::test_x")
    assert Allowed("tests/test_a.py::test_x", "r").covers("tests/test_a.py::test_x[1-2]")
    assert not Allowed("tests/test_a.py::test_x", "r").covers("tests/test_a.py::test_x2")
    assert not Allowed("tests/test_a", "r").covers("tests/test_ab.py::test_x")


def test_the_repository_list_parses() -> None:
    # A malformed entry would stop every run at configure time; this names it in a test too.
    text = (Path(__file__).parent / "allowed_skips.txt").read_text(encoding="utf-8")
    assert all(entry.reason for entry in parse_allowed(text, "tests/allowed_skips.txt"))
