"""What every process that imports a learner's module needs around that import: cheap
bcrypt, and a failed import described in the learner's terms.

Kept light on purpose: an app host's fork server (workbook/apphost.py) imports it before it
forks every host, and workbook/grading.py, which imports pytest (~60 ms), is not needed there.
"""

from __future__ import annotations

import traceback
from pathlib import Path


def cheap_password_hashing() -> None:
    """Make bcrypt as cheap as it allows (cost 4) for the whole grading run.

    Problems hash their seed users at import, and each check imports afresh; at bcrypt's
    default cost (12, ~0.25 s a hash) that alone would blow the time budget. The hashes
    stay real bcrypt hashes that verify, only cheaper.
    """
    try:  # here, not at the top: without them, the problems that never hash still grade
        import bcrypt
        from passlib.handlers.bcrypt import bcrypt as passlib_bcrypt
    except ImportError:  # pragma: no cover - both are dependencies of the workbook
        return
    passlib_bcrypt.default_rounds = passlib_bcrypt.min_rounds
    if not getattr(bcrypt.gensalt, "workbook_cheap", False):
        original = bcrypt.gensalt

        def gensalt(rounds: int = 4, prefix: bytes = b"2b") -> bytes:
            return original(rounds=rounds, prefix=prefix)

        gensalt.workbook_cheap = True  # type: ignore[attr-defined]
        bcrypt.gensalt = gensalt


def is_under(file: str, folder: Path) -> bool:
    """Whether the file `file` (resolved) lies under `folder`."""
    if not file:
        return False
    try:
        Path(file).resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def describe_syntax_error(exc: SyntaxError, folder: Path) -> str:
    """Two lines: where Python could not read the learner's file, and the code there."""
    where = short_path(exc.filename or "?", folder)
    code = (exc.text or "").rstrip()
    lines = [f"Python cannot read {where}, line {exc.lineno}: {exc.msg}."]
    if code:
        lines.append(f"    {code.strip()}")
    return "\n".join(lines)


def describe_import_exception(exc: BaseException, folder: Path) -> str:
    """What importing the learner's module raised, with its frames in the learner's files."""
    if isinstance(exc, SystemExit):
        return f"Importing your code called sys.exit({exc.code!r}); a module must not exit when imported."
    if isinstance(exc, KeyboardInterrupt):
        return "Importing your code raised KeyboardInterrupt."
    frames = learner_frames(exc, folder)
    head = f"Importing your code raised {type(exc).__name__}: {exc}"
    return head + ("\n" + frames if frames else "")


def learner_frames(exc: BaseException, folder: Path | None) -> str:
    """The traceback of `exc` trimmed to the frames in the learner's files (under `folder`),
    at most 12 lines."""
    if folder is None:
        return ""
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if is_under(frame.filename, folder):
            lines.append(f"  {short_path(frame.filename, folder)}, line {frame.lineno}, in {frame.name}")
            if frame.line:
                lines.append(f"    {frame.line.strip()}")
    return "\n".join(lines[-12:])


def short_path(filename: str, folder: Path) -> str:
    """`filename` as `<folder name>/<path under folder>`, or as it is when not under it."""
    try:
        return f"{folder.name}/{Path(filename).resolve().relative_to(folder)}"
    except ValueError:
        return filename
