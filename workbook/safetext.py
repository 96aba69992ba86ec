"""Making untrusted text (anything learner code or a submission's file names produce) safe
to store, print and open. Small pure functions; each names the rule it follows.

- Valid text: every stored string is valid UTF-8 (Python `str` without lone surrogates), so
  writing it with `encoding="utf-8"` can never fail.
- Size: a message or an output is capped, with a note saying how much was cut.
- Terminals: C0/C1 control characters start ECMA-48 control sequences (ECMA-48, 5th ed.,
  §5: ESC, CSI, OSC...); a clear-screen, a window title or hidden text comes from them.
  Learner text shows them escaped; the workbook adds its own colours afterwards.
- CI logs: GitHub Actions acts on any log line that starts with `::` once leading
  whitespace is trimmed ("Workflow commands for GitHub Actions", including
  `::stop-commands::`), and, when that fails, on a legacy `##[command]` anywhere in a line
  (actions/runner, src/Runner.Common/ActionCommand.cs, TryParseV2 then TryParse;
  src/Runner.Worker/ActionCommandManager.cs). Learner lines get a space between the two
  colons, and `##[` becomes `# #[`.
- Spreadsheets: OWASP "CSV Injection" — cells starting with `=`, `+`, `-`, `@`, tab or
  carriage return are prefixed with a single quote so they open as text. A cell holds no
  raw control character at all, newline and tab included: escaped as in every other output.
- Markdown (a GitHub job summary): learner text goes in a code span, where CommonMark
  (0.31.2, §6.1 "Code spans") interprets nothing — no link, image, emphasis, HTML, entity
  or autolink (GFM's autolink extension acts on text nodes only). Its fence is one backtick
  longer than the longest run of backticks inside, with a space of padding when the text
  starts or ends with a backtick or a space (§6.1 strips one space from each side).

Sources: https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands,
https://github.com/actions/runner/blob/main/src/Runner.Common/ActionCommand.cs,
https://owasp.org/www-community/attacks/CSV_Injection, https://spec.commonmark.org/0.31.2/#code-spans,
https://github.github.com/gfm/#tables-extension-,
https://ecma-international.org/publications-and-standards/standards/ecma-48/.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MESSAGE_LIMIT = 8_000  # characters of one check's message
OUTPUT_LIMIT = 4_000  # characters of what the learner's code printed during one check
NAME_BYTES_LIMIT = 120  # bytes of a file name derived from a submission's name (ext4: 255)

# C0 controls except tab and newline, DEL, the C1 controls (ECMA-48 §5.2, §5.3), and the
# Unicode line and paragraph separators (str.splitlines would start a new line there), and
# the bidirectional embeddings, overrides and isolates (Unicode UAX #9; "Trojan Source",
# CVE-2021-42574), which make a line read differently from what it holds.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# A workflow command: `::` at the start of a line, after optional whitespace.
_WORKFLOW_COMMAND = re.compile(r"^([ \t\f\v]*):(?=:)", re.MULTILINE)
_SURROGATE = re.compile("[\ud800-\udfff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_NAME = re.compile(r"[^\w.@+-]")
# Every control character, tab and newline included: a CSV cell keeps none of them raw.
_CSV_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_BACKTICKS = re.compile("`+")


def valid_text(value: object) -> str:
    """`value` as a str that encodes to UTF-8: lone surrogates (from undecodable bytes or
    learner strings like "\\udcff") become U+FFFD. Bytes are decoded with replacement."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def capped(text: str, limit: int) -> str:
    """`text` cut to at most about `limit` characters (must be >= 0), ending with a note
    "… (N more characters cut)" when anything was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters cut)"


def learner_text(value: object, limit: int = MESSAGE_LIMIT) -> str:
    """The one entry point for a string learner code produced: valid UTF-8, control
    characters shown escaped, no line able to start a workflow command, capped. Applied as
    the text enters, so every report is safe to print: also JSON read with `jq -r`."""
    return capped(log_safe(str(value) if not isinstance(value, str) else value), limit)


def terminal_safe(text: str) -> str:
    """Control characters shown escaped (`\\x1b`), so no ECMA-48 sequence from learner
    text reaches a terminal; tab and newline are kept. Call it before adding colours."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def no_workflow_commands(text: str) -> str:
    """Every line that would start a GitHub Actions workflow command (`::` after optional
    whitespace) gets a space between its colons: `::error` -> `: :error`; every legacy
    command prefix `##[`, wherever it stands, becomes `# #[`."""
    return no_legacy_commands(_WORKFLOW_COMMAND.sub(r"\1: ", text))


def no_legacy_commands(text: str) -> str:
    """`##[` becomes `# #[` everywhere. Safe on a whole JSON document or a line of the
    workbook's own `::error` commands, since neither uses `##[` in its syntax."""
    return text.replace("##[", "# #[")


def last_lines(text: str, count: int = 20) -> list[str]:
    """The last `count` lines of `text`, after a note saying how many earlier ones are not
    shown (a cut is always said)."""
    lines = text.splitlines()
    if len(lines) <= count:
        return lines
    return [f"… ({len(lines) - count} earlier lines not shown)", *lines[-count:]]


def log_safe(text: str) -> str:
    """Learner text for a terminal or a CI log: escaped controls, no workflow command."""
    return no_workflow_commands(terminal_safe(valid_text(text)))


def log_safe_line(text: str) -> str:
    """Learner text for within one line of a terminal or CI log: as `log_safe`, with every
    newline and tab shown escaped too (`\x0a`)."""
    return _CSV_CONTROL.sub(_escaped, log_safe(text))


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet opens as text (OWASP CSV injection: prefix `'`).
    Numbers stay numbers; strings are also made safe for a CI log, and every control
    character, newline and tab included, is shown escaped (`\\x0a`): one row a line."""
    if not isinstance(value, str):
        return value
    text = _CSV_CONTROL.sub(_escaped, log_safe(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def markdown_code(text: str, *, in_table: bool = False) -> str:
    """`text` as an inert Markdown code span (CommonMark §6.1): shown as it is, with line
    breaks as spaces; "" for blank text. `in_table` escapes `|` as `\\|`, which a GFM
    table cell needs even inside a code span (GFM "Tables", example 200)."""
    flat = " ".join(text.splitlines())
    if not flat.strip():
        return ""
    fence = "`" * (max(map(len, _BACKTICKS.findall(flat)), default=0) + 1)
    pad = " " if flat[0] in "` " or flat[-1] in "` " else ""
    span = f"{fence}{pad}{flat}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def shown_name(name: str) -> str:
    """A submission's file or folder name as people see it: undecodable bytes (held by
    Python as surrogate escapes) as `\\xNN`, control characters escaped."""
    raw = name.encode("utf-8", errors="surrogateescape")
    return terminal_safe(raw.decode("utf-8", errors="backslashreplace"))


def shown_path(path: Path, base: Path | None = None, *, posix: bool = False) -> str:
    """How every message and report shows a path: relative to `base` (default: the working
    directory) when it is under it (`.` for `base` itself), else as given; with `/`
    separators when `posix`; undecodable bytes and control characters escaped (shown_name)."""
    try:
        relative = path.resolve().relative_to((base or Path.cwd()).resolve())
    except ValueError:
        relative = path
    return shown_name(relative.as_posix() if posix else str(relative))


def file_name(name: str, suffix: str = "") -> str:
    """A file name derived from an untrusted `name`: letters, digits and `._@+-` only, no
    leading dot, at most NAME_BYTES_LIMIT bytes with `suffix`. Whenever anything changed, a
    short digest of the original is appended so that two names never collide."""
    cleaned = _UNSAFE_NAME.sub("_", shown_name(name)).lstrip(".") or "_"
    if cleaned == name and len((cleaned + suffix).encode("utf-8")) <= NAME_BYTES_LIMIT:
        return cleaned + suffix
    digest = hashlib.sha256(name.encode("utf-8", errors="surrogatepass")).hexdigest()[:10]
    room = NAME_BYTES_LIMIT - len(suffix.encode("utf-8")) - len(digest) - 1
    head = cleaned.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return f"{head}~{digest}{suffix}"
