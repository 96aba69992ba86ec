"""Hidden checks: checks whose code and details learners must not see.

- An instructor's private graders (`--graders DIR`) are secret as a whole: no report made
  with them carries their source. Learner output that reproduces a line of it (a learner's
  code can read files it can reach and print them) is withheld line by line.
- A grader file may mark checks hidden with a module-level `HIDDEN = {"check_id", ...}`
  (read statically, like WEIGHTS): Gradescope gets them with `visibility: "hidden"` and
  without the learner output attached to them.
"""

from __future__ import annotations

import ast
from dataclasses import replace

from workbook.engine import GraderError, ProblemResult, check_sources, grader_files
from workbook.manifest import Problem

WITHHELD = "[withheld: a line of the graders' code]"
# Shorter source lines ("pass", ")", '"""') are too common to say anything about the graders.
MIN_SOURCE_LINE = 12


def declared_hidden(problem: Problem) -> set[str]:
    """The check ids the problem's grader files list in `HIDDEN = {...}` (a set, list or
    tuple of strings); anything else there is ignored."""
    hidden: set[str] = set()
    for _, _, tree in grader_files(problem):
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HIDDEN" for t in node.targets):
                try:
                    declared = ast.literal_eval(node.value)
                except ValueError:
                    continue
                if isinstance(declared, set | list | tuple):
                    hidden.update(str(item) for item in declared)
    return hidden


def is_private(problem: Problem) -> bool:
    """True when the problem is graded with an instructor's own graders (`--graders`)."""
    return problem.graders is not None


def source_lines(problem: Problem) -> set[str]:
    """The distinctive lines (stripped, >= MIN_SOURCE_LINE characters) of every check's code."""
    try:
        sources = check_sources(problem)
    except (GraderError, OSError, SyntaxError):
        return set()
    return {
        line.strip() for text in sources.values() for line in text.splitlines() if len(line.strip()) >= MIN_SOURCE_LINE
    }


def redacted(text: str, lines: set[str]) -> str:
    """`text` with every line that is a line of grader code replaced by WITHHELD."""
    if not text or not lines:
        return text
    return "\n".join(WITHHELD if line.strip() in lines else line for line in text.split("\n"))


def without_grader_source(results: list[ProblemResult]) -> list[ProblemResult]:
    """Copies of `results` whose learner-visible texts hold no line of private graders'
    code; results graded with the bundled graders (public anyway) are returned as they are."""
    cleaned = []
    for result in results:
        if not is_private(result.problem):
            cleaned.append(result)
            continue
        lines = source_lines(result.problem)
        checks = [
            replace(
                check,
                message=redacted(check.message, lines) if check.message else check.message,
                output=redacted(check.output, lines),
                traceback=redacted(check.traceback, lines),
            )
            for check in result.checks
        ]
        cleaned.append(replace(result, checks=checks))
    return cleaned
