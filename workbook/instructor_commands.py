"""Instructors' and CI's tools: batch grading, merging shards, author validation."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the `workbook` command group."""
