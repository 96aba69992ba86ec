"""Every grader passes on its reference solution and fails, cleanly, on its untouched stub."""

from __future__ import annotations

import pytest
from support import EXERCISES, PROBLEMS, SOLUTIONS, case_id, engine_errors, failures, grade


@pytest.mark.parametrize("problem", PROBLEMS, ids=case_id)
def test_solution_passes_every_check(problem):
    result = grade(problem, SOLUTIONS)
    assert result.status == "pass", f"the reference solution fails:\n{failures(result)}"
    assert result.total >= 10, f"only {result.total} checks"


@pytest.mark.parametrize("problem", PROBLEMS, ids=case_id)
def test_untouched_stub_fails_without_engine_errors(problem):
    result = grade(problem, EXERCISES)
    assert result.status != "pass", "the untouched stub passes every check"
    assert engine_errors(result) == []
    assert [c.kind for c in result.checks if c.kind in ("timeout", "exit")] == [], failures(result)
