"""Counted nouns in CLI output: "1 check", "2 checks", never "1 checks" (issue 14)."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`noun` as `count` of them are called; `many` when adding "s" is wrong ("dependencies")."""
    return noun if count == 1 else (many or noun + "s")


def counted(count: int, noun: str, many: str | None = None) -> str:
    """ "1 check", "3 checks": the count and its noun."""
    return f"{count} {plural(count, noun, many)}"
