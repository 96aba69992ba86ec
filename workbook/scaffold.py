"""`workbook dev new SLUG`: a new problem in every place a problem lives, ready to fill in.

Like rustlings' `dev new`, it writes a small problem that already works end to end: a stub
that fails, a reference solution that passes, one example check written with the grader kit
(workbook/grading.py), a statement, a corpus file and the manifest entry (appended to
workbook.toml as text, so the file's comments stay). `workbook dev check -p N` lists every
file still holding a `TODO(author)` placeholder, and passes once the author has replaced them.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from workbook import generated
from workbook.manifest import ROOT, load_manifest

# Lowercase snake_case, the form of the existing slugs (p1_dependency_chain): it names
# folders, a corpus file and a grader module, so it must be a safe file and module name.
SLUG = re.compile(r"[a-z][a-z0-9_]{0,39}")
SLUG_RULE = "lowercase letters, digits and underscores, starting with a letter, at most 40 characters"
NUMBER_PREFIX = re.compile(r"p\d+_")
AUTHOR_TODO = "TODO(author)"


class ScaffoldError(Exception):
    """The slug or title cannot be used; the message says why, in one line."""


class StaleGeneratedFiles(Exception):
    """The generated files were already stale: regenerating them would silently bless
    changes (perhaps a learner's work in exercises/) that nobody meant to publish."""


@dataclass(frozen=True)
class NewProblem:
    """A scaffolded problem: its number, slug, and what was written (paths relative to the
    workbook's root, the manifest last, then the regenerated files' summary lines)."""

    number: int
    slug: str
    written: tuple[Path, ...]
    regenerated: tuple[str, ...]


def new_problem(slug: str, title: str | None = None, root: Path = ROOT) -> NewProblem:
    """Scaffold problem `slug` (number: the manifest's largest plus one) in the workbook at
    `root`, then regenerate the generated files.

    Nothing is written when it raises: ScaffoldError when `slug` or `title` is malformed or
    `slug` already used, StaleGeneratedFiles when a generated file was stale before, and
    ManifestError when workbook.toml cannot be read.
    """
    _refuse_malformed(slug)
    title = _checked_title(title or default_title(slug))
    manifest_path = root / "workbook.toml"
    manifest = load_manifest(manifest_path)
    number = max((problem.number for problem in manifest.problems), default=0) + 1
    files = scaffold_files(number, slug, title)
    taken = _places_taken(slug, {problem.slug for problem in manifest.problems}, root)
    if taken:
        raise ScaffoldError(f"problem {slug!r} already exists ({', '.join(taken)}); choose another slug")
    _refuse_other_number(slug, number)
    if already_stale := generated.stale(root):
        raise StaleGeneratedFiles(
            "; ".join(already_stale) + ". Nothing was written: `workbook dev new` regenerates these files "
            "and would publish those changes unseen."
        )
    manifest_text = _appended(manifest_path.read_text(encoding="utf-8"), manifest_entry(number, slug, title))
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    manifest_path.write_text(manifest_text, encoding="utf-8")
    regenerated = generated.update(root)
    return NewProblem(number, slug, (*files, Path("workbook.toml")), tuple(regenerated))


def _places_taken(slug: str, known_slugs: set[str], root: Path) -> list[str]:
    """Where problem `slug` already exists: the manifest, its folders, its corpus file."""
    places = [Path(folder) / slug for folder in ("exercises", "solutions", "graders")]
    places.append(Path("tests") / "corpus" / f"{slug}.toml")
    taken = [place.as_posix() for place in places if (root / place).exists()]
    return ["workbook.toml", *taken] if slug in known_slugs else taken


def default_title(slug: str) -> str:
    """The slug as words, without its `pN_` prefix: p7_rate_limiting -> "Rate limiting"."""
    words = NUMBER_PREFIX.sub("", slug, count=1).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _refuse_malformed(slug: str) -> None:
    if not SLUG.fullmatch(slug):
        raise ScaffoldError(f"{slug!r} is not a problem slug: use {SLUG_RULE} (for example p7_rate_limiting)")


def _refuse_other_number(slug: str, number: int) -> None:
    # A slug's pN_ prefix is read as the problem's number; a different one would mislead.
    prefix = NUMBER_PREFIX.match(slug)
    if prefix and prefix.group() != f"p{number}_":
        suggestion = f"p{number}_{slug[prefix.end() :]}"
        raise ScaffoldError(f"{slug!r} names another number than the new problem's, {number}: use {suggestion!r}")


def _checked_title(title: str) -> str:
    # The title lands in TOML, Markdown and Python docstrings: one plain line fits them all.
    if not title.strip() or any(char in title for char in '\\"\n\r\t'):
        raise ScaffoldError(f"{title!r} is not a usable title: one line, without quotes or backslashes")
    return title.strip()


def _appended(manifest_text: str, entry: str) -> str:
    text = manifest_text.rstrip("\n") + "\n\n" + entry
    tomllib.loads(text)  # a malformed result is a bug here, never a broken workbook.toml
    return text


def scaffold_files(number: int, slug: str, title: str) -> dict[Path, str]:
    """Relative path -> text of every file a new problem needs, except the manifest entry."""
    values = {"number": number, "slug": slug, "title": title, "todo": AUTHOR_TODO}
    grader_name = NUMBER_PREFIX.sub("", slug, count=1) or slug
    templates = {
        Path("exercises") / slug / "README.md": STATEMENT,
        Path("exercises") / slug / "app.py": STUB,
        Path("solutions") / slug / "app.py": SOLUTION,
        Path("graders") / slug / f"test_{grader_name}.py": GRADER,
        Path("graders") / slug / "probes.py": PROBES,
        Path("tests") / "corpus" / f"{slug}.toml": CORPUS,
    }
    return {path: Template(template).substitute(values) for path, template in templates.items()}


def manifest_entry(number: int, slug: str, title: str) -> str:
    """The `[[problems]]` table of a new problem, as TOML text ending in a newline."""
    lesson = f"{AUTHOR_TODO}: the lesson sections it practises, e.g. §1 Dependency Injection; §9 Problem {number}"
    return Template(MANIFEST_ENTRY).substitute(
        number=number, slug=_toml_string(slug), title=_toml_string(title), lesson=_toml_string(lesson), todo=AUTHOR_TODO
    )


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string; non-ASCII stays readable (§, —).
    return json.dumps(text, ensure_ascii=False)


MANIFEST_ENTRY = """\
[[problems]]
number = $number
slug = $slug
title = $title
module = "app"
files = ["app.py"]
lesson = $lesson
hints = [
    \"\"\"$todo: 3 to 5 hints, from a gentle nudge to the last missing fact. Each asks a question \\
    and points at the lesson section to reread; none gives the answer away.\"\"\",
]
"""

STATEMENT = """\
# Problem $number — $title

Read first: lesson $todo (the sections this problem practises); the problem is §9 *Problem $number*.

$todo: what the learner builds and why it matters, in two or three sentences.

## The contract

Edit `app.py` in this folder. The grader imports it and uses `app`.

- `GET /ping` answers `200` with `{"message": "pong"}`.

## Example

```
GET /ping
  -> 200               {"message": "pong"}
```

## Check your work

```bash
workbook check $number            # every check, with what was sent, expected and received
workbook hint $number             # a nudge, one at a time
```

Try it by hand: `uvicorn app:app --reload` in this folder, then open http://127.0.0.1:8000/docs.
"""

STUB = '''\
"""Problem $number — $title.

$todo: one sentence on what the learner builds. Read README.md in this folder for the
exact contract, then run `workbook check $number` after each change.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="Problem $number — $title")  # Don't change this line


@app.get("/ping")
def ping() -> dict[str, str]:
    # TODO: answer {"message": "pong"} (README.md, "The contract").
    raise NotImplementedError("ping() is not written yet")
'''

SOLUTION = '''\
"""Problem $number — $title: the reference solution.

$todo: one "why" comment at each place the stub says TODO.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="Problem $number — $title")  # Don't change this line


@app.get("/ping")
def ping() -> dict[str, str]:
    # Why a dict: FastAPI serialises it to the JSON object the contract names.
    return {"message": "pong"}
'''

GRADER = '''\
"""Grader for problem $number — $title.

$todo: what every check can rely on (the environment, patched modules) and what it varies.
Each check gets its own app host (the `host` fixture): a sandboxed process that imported the
learner's module afresh for it and serves it with uvicorn. This grader never imports the learner's
code; it talks to the app over HTTP and asks the probes in probes.py for anything else.
graders/README.md lists the kit's helpers and the conventions.
"""

from __future__ import annotations

from typing import Any

import pytest

from workbook.grading import expect_json, expect_status


@pytest.fixture
def api(host: Any) -> Any:
    """A client for the learner's app, served by a real uvicorn in the app host."""
    return host.client()


# $todo: replace this example with the problem's checks: one behaviour per check, its id the
# function name without `test_`, its title (what the learner sees) the docstring's first line.
def test_ping_answers_pong(api: Any) -> None:
    """GET /ping answers 200 with {"message": "pong"}."""
    response = api.get("/ping")
    expect_status(response, 200, "GET /ping must answer 200: declare the route with @app.get('/ping').")
    expect_json(response, {"message": "pong"}, 'GET /ping must answer the object {"message": "pong"}.')
'''

PROBES = '''\
"""Probe menu of problem $number's grader: functions the app host runs beside the learner's
code, `def name(host, **json_arguments) -> JSON` (workbook/apphost.py; `host.module` is the
learner's module). Their answers are observations the grader judges, never verdicts: the
grader chooses the test data and passes it in.

A host serves several checks in turn: between two checks it forgets the learner's modules and
puts back the environment, the working folder, warnings and loggers. A probe that replaces
something in a library (`sqlite3.connect = spy`) names it in PATCHED, so it is put back too.
"""

from __future__ import annotations

from typing import Any

# "module.attribute" names the probes below replace in libraries (none in this example).
PATCHED: tuple[str, ...] = ()


# $todo: replace this example with what the checks must observe besides HTTP answers.
def route_paths(host: Any) -> list[str]:
    """The paths of the app's routes, in order."""
    return [str(getattr(route, "path", "")) for route in host.module.app.routes]
'''

CORPUS = """\
# Problem $number — realistic wrong solutions (each must fail the checks it names) and alternative
# correct solutions (each must pass every check). Edits apply to solutions/$slug/.
# `source` names the public report a mistake was taken from.
# $todo: at least 8 wrong solutions that together trip every check, and 2 alternatives
# (tests/test_corpus.py); replace the two examples below.

[[wrong]]
name = "answers_ping"
mistake = "answers the request's own word instead of the one the contract names"
rejected_by = ["ping_answers_pong"]
[[wrong.edits]]
file = "app.py"
old = '''    return {"message": "pong"}'''
new = '''    return {"message": "ping"}'''

# --- alternative correct solutions ---------------------------------------------------

[[alternative]]
name = "async_endpoint"
why = "an `async def` endpoint answers the same"
[[alternative.edits]]
file = "app.py"
old = '''def ping() -> dict[str, str]:'''
new = '''async def ping() -> dict[str, str]:'''
"""
