"""pytest plugin for ``scripts/reliability``: one "checks" row per abuse/negative test file.

Scenarios with their own figures call ``record`` themselves; the negative and abuse suites
(rate limits, security headers, SSRF guard, refused launches and registrations) assert their
codes per test, so the table gets their count of tests and failures instead.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.record import Figures, record

_tests: Counter[str] = Counter()
_failed: Counter[str] = Counter()
_seconds: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if Path(path).parent.name == "reliability":
        return  # these record their own figures
    _seconds[path] += report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _tests[path] += 1
        if report.outcome == "failed":
            _failed[path] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    for path, n in sorted(_tests.items()):
        figures = Figures(
            scenario=f"{Path(path).stem} ({n} tests)",
            suite="checks",
            requests=n,
            seconds=_seconds[path],
        )
        if _failed[path]:
            figures.count("test_failed", _failed[path])
        record(figures)
