"""Copies the bundled problems into the package when a wheel is built.

The manifest, graders/, exercises/ and solutions/ live at the repository root, where
authors edit them and the README's editable install uses them in place. A wheel has no
repository root, so this build step copies them to `workbook/bundled/` inside the built
package; workbook/workspace.py looks there when the package does not sit in a checkout.
Copying at build time keeps a single copy in the repository, and a new problem folder is
carried without listing it anywhere. Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = ("workbook.toml", "graders", "exercises", "solutions")
# What Python, pytest and editors leave behind; never part of the package.
LEFT_BEHIND = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".DS_Store", "*.swp", "*~")


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
    for name in BUNDLED:
        source = HERE / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=LEFT_BEHIND)
        else:
            shutil.copy2(source, destination / name)


setup(cmdclass={"build_py": BuildWithProblems})
