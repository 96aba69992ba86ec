"""The text-safety rules (workbook/safetext.py), one behaviour each."""

from __future__ import annotations

import pytest

from workbook.safetext import (
    capped,
    csv_cell,
    file_name,
    last_lines,
    log_safe,
    markdown_code,
    no_workflow_commands,
    shown_name,
    valid_text,
)


def test_lone_surrogates_become_one_replacement_character_each():
    assert valid_text("a\udcff\ud800b") == "a\ufffd\ufffdb"
    assert valid_text(b"caf\xe9") == "caf\ufffd"
    assert valid_text("plain é") == "plain é"


def test_capped_text_says_how_much_was_cut():
    assert capped("abcdefgh", 3) == "abc\n… (5 more characters cut)"
    assert capped("abc", 3) == "abc"


def test_bidirectional_overrides_are_shown_escaped():
    assert log_safe("grade: \u202e01\u202c \u2066x\u2069") == "grade: \\u202e01\\u202c \\u2066x\\u2069"


def test_control_sequences_are_shown_escaped_and_tabs_and_newlines_kept():
    assert log_safe("\x1b]0;title\x07x\x1b[2J\ty\nz\x9b\u2028") == "\\x1b]0;title\\x07x\\x1b[2J\ty\nz\\x9b\\u2028"


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("::error::x", ": :error::x"),
        ("  \t::add-mask::secret", "  \t: :add-mask::secret"),
        ("ok\n::stop-commands::token\nlast ::x", "ok\n: :stop-commands::token\nlast ::x"),
        ("a\r::warning::x", "a\\x0d::warning::x"),  # no carriage return left to start a line
        ("text ##[error]legacy ##[stop-commands]t", "text # #[error]legacy # #[stop-commands]t"),
    ],
)
def test_no_line_can_start_a_workflow_command(text, safe):
    assert log_safe(text) == safe
    assert no_workflow_commands(": :x") == ": :x"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_starting_a_formula_open_as_text(start):
    cell = str(csv_cell(start + "SUM(A1)"))
    # Prefixed with a quote, or (CR, tab) escaped so that it no longer starts with a formula character.
    assert cell.startswith(("'", "\\x0d", "\\x09")) and cell.endswith("SUM(A1)"), cell
    assert csv_cell(3) == 3 and csv_cell("alice") == "alice"


def test_csv_cells_hold_no_raw_control_character():
    assert csv_cell("ann\nbo\rcy\x1b[2J\tdi\x00\u2028") == "ann\\x0abo\\x0dcy\\x1b[2J\\x09di\\x00\\u2028"
    assert csv_cell("-\n=1") == "'-\\x0a=1"  # the formula guard still applies


def test_markdown_code_spans_keep_links_images_emphasis_and_html_inert():
    hostile = (
        "![tracker](https://evil.example/pixel.png?u=grader) "
        "[Download your grade fix](https://evil.example/phish) **bold**"
    )
    assert markdown_code(hostile) == f"`{hostile}`"
    assert markdown_code("<img src=x> &amp; _x_") == "`<img src=x> &amp; _x_`"


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("a `b` c", "``a `b` c``"),  # one backtick longer than the longest run inside
        ("``x` y", "``` ``x` y ```"),  # a leading backtick: padded with a space each side
        ("end`", "`` end` ``"),
        (" both ", "`  both  `"),  # CommonMark strips one space from each side
        ("two\nlines", "`two lines`"),  # a line break would end the list item or table row
        ("", ""),
        ("  ", ""),
    ],
)
def test_markdown_code_spans_hold_any_backticks_and_spaces(text, span):
    assert markdown_code(text) == span


def test_markdown_code_spans_in_a_table_escape_the_cell_separator():
    assert markdown_code("a | [x](y)", in_table=True) == "`a \\| [x](y)`"


def test_names_are_shown_escaped_and_file_names_are_safe_bounded_and_distinct():
    latin1 = b"Jos\xe9".decode("utf-8", "surrogateescape")
    assert shown_name(latin1) == "Jos\\xe9"
    assert file_name("alice", ".json") == "alice.json"
    names = [latin1, "Jos_xe9", "n" * 252, "n" * 251, "../../x", ".hidden", "a/b", "=1+2"]
    made = [file_name(name, ".json") for name in names]
    assert len(set(made)) == len(made), made
    for made_name in made:
        assert len(made_name.encode()) <= 120 and "/" not in made_name and not made_name.startswith(".")


def test_the_last_lines_say_how_many_earlier_ones_are_cut():
    text = "\n".join(f"line {n}" for n in range(1, 26))
    assert last_lines(text, 3) == ["… (22 earlier lines not shown)", "line 23", "line 24", "line 25"]
    assert last_lines("a\nb", 3) == ["a", "b"]
