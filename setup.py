"""Copies the bundled problems into the package when a wheel is built.

The manifest, graders/, exercises/ and solutions/ live at the repository root, where
authors edit them and the README's editable install uses them in place. A wheel has no
repository root, so this build step copies them to `workbook/bundled/` inside the built
package; workbook/workspace.py looks there when the package does not sit in a checkout.
Copying at build time keeps a single copy in the repository, and a new problem folder is
carried without listing it anywhere. Everything else is configured in pyproject.toml.

The builder's checkout is somebody's working folder: its exercises/ may hold their own
solutions, and running an app leaves a `users.db` beside it. So the wheel takes only what
the authors published, never whatever happens to lie there:

- exercises/ is written from the pristine starter archive `workbook/starters.json` (what
  `workbook init` and `workbook reset` use), not from the exercises/ folder;
- graders/ holds exactly the files its checksum list `graders/CHECKSUMS.sha256` names;
- solutions/ holds, per problem, the files a submission copy would keep (workbook/target.py:
  `.py` files plus the manifest's `files` and `data_files`), so no database, cache or
  `.workbook/` folder.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# The package's own readers of the archive, manifest and submission rules: importable
# without any third-party package, so inside build isolation too.
sys.path.insert(0, str(HERE))
from workbook import starters, target  # noqa: E402
from workbook.manifest import load_manifest  # noqa: E402

CHECKSUMS = "CHECKSUMS.sha256"


class BuildWithProblems(build_py):
    """build_py, plus a copy of the bundled problems into workbook/bundled/."""

    def run(self) -> None:
        super().run()
        # An editable install imports the package from the checkout, which has them already.
        if not getattr(self, "editable_mode", False):
            bundle_problems(Path(self.build_lib) / "workbook" / "bundled")


def bundle_problems(destination: Path) -> None:
    shutil.rmtree(destination, ignore_errors=True)  # no stale files from an earlier build
    destination.mkdir(parents=True)
    shutil.copy2(HERE / "workbook.toml", destination / "workbook.toml")
    manifest = load_manifest(HERE / "workbook.toml")
    for problem in manifest.problems:
        _write_files(destination / "exercises" / problem.slug, starters.starter_files(problem.slug, starters.ARCHIVE))
        solution = HERE / "solutions" / problem.slug
        for relative in target.learner_files(solution, problem) if solution.is_dir() else ():
            _copy(solution / relative, destination / "solutions" / problem.slug / relative)
    graders = HERE / "graders"
    for relative in [*_checksummed(graders / CHECKSUMS), CHECKSUMS]:
        _copy(graders / relative, destination / "graders" / relative)


def _checksummed(checksums: Path) -> list[str]:
    """The files a checksum list names (`<sha256>  <relative path>` lines, as
    workbook/integrity.py writes them)."""
    lines = checksums.read_text(encoding="utf-8").splitlines()
    return [line.partition("  ")[2].strip() for line in lines if line.strip() and not line.startswith("#")]


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, destination)


setup(cmdclass={"build_py": BuildWithProblems})
