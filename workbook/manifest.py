"""The manifest (workbook.toml) is the one place that describes the problems."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from workbook.workspace import BUNDLED_GRADERS, CODE_ROOT, MANIFEST_PATH

# Where the package is imported from (child processes put it on sys.path); the bundled
# problems are found through workbook/workspace.py.
ROOT = CODE_ROOT
# An instructor may grade with a manifest or a grader folder of their own; the engine passes
# both to its child processes through these variables, so every process reads the same ones.
MANIFEST_ENV = "WORKBOOK_MANIFEST"
GRADERS_ENV = "WORKBOOK_GRADERS"


def graders_root() -> Path:
    """The grader folder in use: WORKBOOK_GRADERS, else the bundled graders/."""
    return Path(os.environ.get(GRADERS_ENV) or BUNDLED_GRADERS).resolve()


class ManifestError(Exception):
    """The manifest is missing or malformed."""


@dataclass(frozen=True)
class Problem:
    number: int
    slug: str
    title: str
    module: str
    files: tuple[str, ...]
    lesson: str
    hints: tuple[str, ...]
    weights: dict[str, float] = field(default_factory=dict)
    check_timeout_s: float = 4.0
    time_limit_s: float = 60.0
    graders: Path | None = None  # a grader folder laid out like graders/; None: graders_root()
    bonus: bool = False  # counted apart in the learner's progress, offered after the others
    stub_may_pass: bool = False  # `dev check` accepts an untouched stub that passes every check
    # Globs (relative to the problem folder) of data files a submission copy keeps beside its .py files.
    data_files: tuple[str, ...] = ()

    @property
    def grader_dir(self) -> Path:
        return (self.graders or graders_root()) / self.slug

    @property
    def probes(self) -> Path:
        """The grader's probe menu (workbook/hostkit.py)."""
        return self.grader_dir / PROBES_FILE

    @property
    def hosted(self) -> bool:
        """Whether the graders reach the learner's code only through app hosts (issue 11):
        the grader folder has a probe menu."""
        return has_probe_menu(self.grader_dir)

    def weight(self, check_id: str) -> float:
        return float(self.weights.get(check_id, 1.0))


PROBES_FILE = "probes.py"


def has_probe_menu(grader_folder: Path) -> bool:
    """Whether a problem's grader folder has a probe menu, so its checks run apart from the
    learner's code (issue 11)."""
    return (grader_folder / PROBES_FILE).is_file()


@dataclass(frozen=True)
class Manifest:
    title: str
    problems: tuple[Problem, ...]

    @property
    def core_problems(self) -> list[Problem]:
        """The problems a learner must solve, in manifest order."""
        return [problem for problem in self.problems if not problem.bonus]

    @property
    def bonus_problems(self) -> list[Problem]:
        """The bonus problems, offered once the others are solved and counted apart."""
        return [problem for problem in self.problems if problem.bonus]

    def by_number(self, number: int) -> Problem:
        for problem in self.problems:
            if problem.number == number:
                return problem
        raise KeyError(number)

    def by_slug(self, slug: str) -> Problem:
        for problem in self.problems:
            if problem.slug == slug:
                return problem
        raise KeyError(slug)


def check_id_of(test_name: str) -> str:
    """A check's id, as weights, `-k`, progress and reports name it: its test function's
    name without `test_` (`test_login_ok` -> `login_ok`). A pytest node id
    (`graders/p1/test_x.py::test_login_ok`) gives the same id."""
    return test_name.rsplit("::", 1)[-1].removeprefix("test_")


def load_manifest(path: Path | None = None) -> Manifest:
    path = path or Path(os.environ.get(MANIFEST_ENV) or MANIFEST_PATH)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc}") from exc
    defaults = data.get("workbook", {})
    try:
        problems = tuple(_problem(entry, defaults) for entry in data["problems"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"the manifest {path} is malformed: {exc!r}") from exc
    return Manifest(title=defaults.get("title", "Workbook"), problems=problems)


def _problem(entry: dict, defaults: dict) -> Problem:
    return Problem(
        number=int(entry["number"]),
        slug=str(entry["slug"]),
        title=str(entry["title"]),
        module=str(entry.get("module", "app")),
        files=tuple(entry["files"]),
        lesson=str(entry.get("lesson", "")),
        hints=tuple(entry.get("hints", ())),
        weights=dict(entry.get("weights", {})),
        check_timeout_s=float(entry.get("check_timeout_s", defaults.get("check_timeout_s", 4.0))),
        time_limit_s=float(entry.get("time_limit_s", defaults.get("time_limit_s", 60.0))),
        bonus=_flag(entry, "bonus"),
        stub_may_pass=_flag(entry, "stub_may_pass"),
        data_files=tuple(str(pattern) for pattern in entry.get("data_files", ())),
    )


def _flag(entry: dict, key: str) -> bool:
    # A typo like `bonus = "no"` must not silently make a problem a bonus.
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")
    return value
