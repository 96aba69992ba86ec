"""The learner's loop: hint, reset, watch, run and doctor."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the `workbook` command group."""
