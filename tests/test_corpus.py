"""The corpus under tests/corpus/: every realistic wrong solution is rejected by the checks
it names, and every alternative correct solution passes all checks."""

from __future__ import annotations

import pytest
from support import PROBLEMS, build_case, case_id, cases, corpus, engine_errors, failures, grade

from workbook.engine import discover_checks


@pytest.mark.parametrize(("problem", "case"), cases("wrong"), ids=case_id)
def test_wrong_solution_is_rejected(problem, case, tmp_path):
    named = case["rejected_by"]
    result = grade(problem, build_case(problem, case, tmp_path), only=named)
    assert sorted(c.id for c in result.checks) == sorted(named), "rejected_by names checks that do not exist"
    slipped = [c.id for c in result.checks if c.status == "pass"]
    assert slipped == [], f"{case['name']} ({case['mistake']}) slipped through {slipped}"
    assert engine_errors(result) == []


@pytest.mark.parametrize(("problem", "case"), cases("alternative"), ids=case_id)
def test_alternative_solution_passes(problem, case, tmp_path):
    result = grade(problem, build_case(problem, case, tmp_path))
    assert result.status == "pass", f"{case['name']} is correct but fails:\n{failures(result)}"


@pytest.mark.parametrize("problem", PROBLEMS, ids=case_id)
def test_corpus_is_large_enough(problem):
    found = corpus(problem)
    assert len(found["wrong"]) >= 8, f"{problem.slug} has {len(found['wrong'])} wrong solutions"
    assert len(found["alternative"]) >= 2, f"{problem.slug} has {len(found['alternative'])} alternatives"


@pytest.mark.parametrize("problem", PROBLEMS, ids=case_id)
def test_every_check_is_tripped_by_some_wrong_solution(problem):
    """A check that no realistic wrong solution trips may be a check that cannot fail."""
    named = {check for case in corpus(problem)["wrong"] for check in case["rejected_by"]}
    untripped = [check.id for check in discover_checks(problem) if check.id not in named]
    assert untripped == [], f"no wrong solution in tests/corpus/{problem.slug}.toml names {untripped}"
