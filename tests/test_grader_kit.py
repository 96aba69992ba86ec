"""The grader kit (workbook/grading.py) and the conventions graders share."""

from __future__ import annotations

import re

from workbook.engine import discover_checks
from workbook.manifest import load_manifest

# A title may open with code as written (an identifier, a path, `backticks`, an HTTP method).
CODE_WORD = re.compile(r"[_().`/{]|^[A-Z]+$")


def test_check_titles_are_sentence_case() -> None:
    """Titles are shown to learners one under another: each starts with a capital letter,
    unless its first word is code (`get_settings()`, `users_db`, POST), kept as written."""
    lowercase = [
        f"{problem.slug}::{check.id}: {check.title}"
        for problem in load_manifest().problems
        for check in discover_checks(problem)
        if check.title[:1].islower() and not CODE_WORD.search(check.title.split()[0])
    ]
    assert lowercase == [], "\n".join(lowercase)
