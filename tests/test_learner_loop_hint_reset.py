"""`workbook hint` and `workbook reset`: hints are revealed one by one and remembered; reset
and restore never lose a byte of the learner's work. Every test works on a copy of
exercises/ and its own state folder."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from support import MANIFEST, ROOT, learner_workspace

from workbook import backups, cli, learner_commands, starters
from workbook.state import hints_revealed, load_state

P1 = MANIFEST.by_number(1)
MANIFEST_TEXT = (ROOT / "workbook.toml").read_text(encoding="utf-8")
LEARNER_CODE = b"# my own work\r\nfrom fastapi import FastAPI\napp = FastAPI()\n\xc3\xa9 = 1\n"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A state folder and an exercises/ copy of this test's own."""
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    return learner_workspace(tmp_path, monkeypatch)


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


# --- hint -----------------------------------------------------------------------------


def test_each_hint_call_reveals_the_next_one_and_remembers_it():
    total = len(P1.hints)
    first = invoke("hint", "1")
    assert first.exit_code == 0
    assert f"Hint 1 of {total}" in first.output and f"Hint 2 of {total}" not in first.output
    assert P1.hints[0].split()[0] in first.output
    assert hints_revealed(load_state(), P1.slug) == 1

    second = invoke("hint", "1")
    assert f"Hint 2 of {total}" in second.output and f"Hint 1 of {total}" not in second.output
    assert hints_revealed(load_state(), P1.slug) == 2
    assert f"{total - 2} more" in second.output


def test_all_shows_every_hint_and_later_calls_show_them_again():
    everything = invoke("hint", "1", "--all")
    for number in range(1, len(P1.hints) + 1):
        assert f"Hint {number} of {len(P1.hints)}" in everything.output
    assert hints_revealed(load_state(), P1.slug) == len(P1.hints)
    again = invoke("hint", "1")
    assert f"Hint {len(P1.hints)} of {len(P1.hints)}" in again.output
    assert "every hint" in again.output


def test_hint_points_to_the_lesson_and_progress_survives_results():
    invoke("hint", "1")
    assert "Lesson:" in invoke("hint", "1").output
    # Recording a check result must not forget the hints already seen.
    from workbook.state import record_result, save_state

    state = load_state()
    record_result(state, P1.slug, "fail", 1, 17)
    save_state(state)
    assert hints_revealed(load_state(), P1.slug) == 2


def test_every_hint_is_one_paragraph_and_no_manifest_line_is_longer_than_120_characters():
    long_lines = [number for number, line in enumerate(MANIFEST_TEXT.splitlines(), 1) if len(line) > 120]
    assert long_lines == [], "break these workbook.toml lines with a line-ending backslash"
    for problem in MANIFEST.problems:
        for hint in problem.hints:
            assert "\n" not in hint and "  " not in hint, f"{problem.slug}: {hint!r}"


def test_hint_all_prints_each_hint_whole_and_wrapped():
    result = invoke("hint", "1", "--all")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= learner_commands.WRAP
    printed = "".join(result.output.split())
    for hint in P1.hints:
        assert "".join(hint.split()) in printed


def test_hint_without_a_number_picks_the_first_unsolved_problem_and_rejects_unknown_ones():
    assert f"Problem {MANIFEST.problems[0].number} ·" in invoke("hint").output
    wrong = CliRunner().invoke(cli.main, ["hint", "99"])
    assert wrong.exit_code == 2 and "not a problem number" in wrong.output


# --- the pristine starters ------------------------------------------------------------


def test_starter_archive_matches_exercises():
    """The archive reset restores from is generated from exercises/; regenerate it with
    `workbook dev update` after changing a stub."""
    drift = starters.disagreements()
    assert drift == [], "run `workbook dev update` to regenerate workbook/starters.json:\n" + "\n".join(drift)
    for problem in MANIFEST.problems:
        files = starters.starter_files(problem.slug)
        missing = [name for name in problem.files if name not in files]
        assert missing == [], f"{problem.slug}: the manifest's files {missing} have no starter"


def test_disagreements_name_the_file_that_drifted(isolated, tmp_path):
    archive = tmp_path / "starters.json"
    archive.write_text(starters.dumps(starters.build(isolated)), encoding="utf-8")
    assert starters.disagreements(isolated, archive) == []
    (isolated / P1.slug / "app.py").write_bytes(LEARNER_CODE)
    (isolated / P1.slug / "extra.py").write_text("x = 1\n")
    assert starters.disagreements(isolated, archive) == [
        f"{P1.slug}/app.py: content differs",
        f"{P1.slug}/extra.py: in exercises/ but not in the archive",
    ]


# --- reset ----------------------------------------------------------------------------


def test_reset_round_trip_keeps_every_byte(isolated):
    app = isolated / P1.slug / "app.py"
    starter = app.read_bytes()
    app.write_bytes(LEARNER_CODE)

    result = invoke("reset", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert app.read_bytes() == starter
    [backup] = backups.list_backups(P1.slug)
    assert str(backup.path) in result.output
    assert (backup.path / "app.py").read_bytes() == LEARNER_CODE

    restored = invoke("reset", "1", "--restore", backup.name, "--yes")
    assert restored.exit_code == 0, restored.output
    assert app.read_bytes() == LEARNER_CODE
    # Restoring backed up the starter first: nothing is ever lost, in either direction.
    safety = backups.list_backups(P1.slug)[-1]
    assert safety.name != backup.name and (safety.path / "app.py").read_bytes() == starter


def test_reset_refuses_without_confirmation_when_nobody_can_answer(isolated):
    app = isolated / P1.slug / "app.py"
    app.write_bytes(LEARNER_CODE)
    result = CliRunner().invoke(cli.main, ["reset", "1"])
    assert result.exit_code == 1
    assert "--yes" in result.output
    assert app.read_bytes() == LEARNER_CODE
    assert backups.list_backups(P1.slug) == []


def test_reset_asks_and_a_no_changes_nothing(isolated, monkeypatch):
    monkeypatch.setattr(learner_commands, "stdin_is_interactive", lambda: True)
    app = isolated / P1.slug / "app.py"
    app.write_bytes(LEARNER_CODE)
    refused = invoke("reset", "1", input="n\n")
    assert refused.exit_code == 1 and "Nothing changed" in refused.output
    assert app.read_bytes() == LEARNER_CODE and backups.list_backups(P1.slug) == []

    accepted = invoke("reset", "1", input="y\n")
    assert accepted.exit_code == 0
    assert app.read_bytes() == starters.starter_files(P1.slug)["app.py"]


def test_reset_recreates_deleted_files_and_leaves_added_ones(isolated):
    folder = isolated / P1.slug
    (folder / "app.py").unlink()
    (folder / "helpers.py").write_text("HELP = 1\n")
    assert invoke("reset", "1", "-y").exit_code == 0
    assert (folder / "app.py").read_bytes() == starters.starter_files(P1.slug)["app.py"]
    assert (folder / "helpers.py").read_text() == "HELP = 1\n"
    assert (backups.list_backups(P1.slug)[0].path / "helpers.py").exists()


def test_reset_of_untouched_files_does_nothing():
    result = invoke("reset", "1", "--yes")
    assert result.exit_code == 0 and "nothing to reset" in result.output
    assert backups.list_backups(P1.slug) == []


def test_list_shows_backups_and_latest_restores_the_newest(isolated):
    assert "No backups" in invoke("reset", "1", "--list").output
    app = isolated / P1.slug / "app.py"
    for version in (b"first = 1\n", b"second = 2\n"):
        app.write_bytes(version)
        invoke("reset", "1", "--yes")
    listing = invoke("reset", "1", "--list")
    names = [backup.name for backup in backups.list_backups(P1.slug)]
    assert len(names) == 2 and all(name in listing.output for name in names)
    assert "--restore" in listing.output
    invoke("reset", "1", "--restore", "latest", "--yes")
    assert app.read_bytes() == b"second = 2\n"


def test_restore_of_an_unknown_backup_fails_cleanly(isolated):
    result = CliRunner().invoke(cli.main, ["reset", "1", "--restore", "nope", "--yes"])
    assert result.exit_code == 1 and "no backup called 'nope'" in result.output


def test_reset_without_a_number_takes_the_folder_it_runs_in_else_asks_which(isolated, monkeypatch):
    monkeypatch.chdir(isolated / P1.slug)
    here = invoke("reset", "--list")
    assert here.exit_code == 0, here.output
    assert here.output.startswith("No backups of problem 1 yet"), here.output

    monkeypatch.chdir(isolated)
    numbers = ", ".join(str(problem.number) for problem in MANIFEST.problems)
    elsewhere = CliRunner().invoke(cli.main, ["reset", "--list"])
    assert elsewhere.exit_code == 2, elsewhere.output
    assert elsewhere.output.splitlines()[-1] == (
        f"Error: Which problem? Give its number ({numbers}), or run reset in its folder, exercises/<problem>/."
    )
