"""Broken code that never answers (issue 14, items 1 and 2): a never-returning handler, a
startup that never finishes and a WebSocket event that never comes are each reported with
the right kind, where the learner's code was, and one cause for every check they affect.
The cases are the benchmark's (benchmarks/broken/hangs.toml); no test here measures time."""

from __future__ import annotations

import tomllib

from support import MANIFEST, ROOT, build_case, engine_errors, grade

from workbook import causes
from workbook.report import Style, human_problem

HANGS = tomllib.loads((ROOT / "benchmarks" / "broken" / "hangs.toml").read_text(encoding="utf-8"))
PLAIN = Style(color=False, unicode=False)


def hang_case(slug: str, name: str) -> dict:
    return next(case for case in HANGS[slug] if case["name"] == name)


def grade_case(tmp_path, number: int, name: str, only: list[str]):
    problem = MANIFEST.by_number(number)
    root = build_case(problem, hang_case(problem.slug, name), tmp_path / "graded")
    result = grade(problem, root, only=only)
    assert engine_errors(result) == []
    return result, root / problem.slug


def line_of(path, text: str) -> int:
    """The 1-based line of the only line of `path` that holds `text`."""
    (number,) = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    return number


def by_id(result) -> dict:
    return {check.id: check for check in result.checks}


def test_a_handler_that_never_returns_is_stopped_where_it_loops(tmp_path):
    only = ["list_starts_empty", "delete_with_key_answers_204", "delete_unknown_id_is_404"]
    result, folder = grade_case(tmp_path, 1, "delete_never_returns", only)
    checks = by_id(result)
    assert (checks["list_starts_empty"].status, checks["list_starts_empty"].cause) == ("pass", "")
    first, second = checks["delete_with_key_answers_204"], checks["delete_unknown_id_is_404"]
    assert [(c.status, c.kind) for c in (first, second)] == [("error", "timeout")] * 2
    loop_lines = {line_of(folder / "app.py", "while True:"), line_of(folder / "app.py", "time.sleep(0.01)")}
    assert first.site["function"] == "delete_user" and first.site["line"] in loop_lines, first.message
    assert f"p1_dependency_chain/app.py, line {first.site['line']}, in delete_user" in first.message
    assert second.blocked_by == first.id, second.message
    assert f"same place as check {first.id}" in second.message
    assert first.cause == second.cause != ""


def test_a_startup_that_never_finishes_is_one_cause_shown_once(tmp_path):
    only = ["startup_opens_in_memory_db", "list_items_reads_state_db", "stats_endpoint"]
    result, folder = grade_case(tmp_path, 5, "startup_never_finishes", only)
    assert {(c.status, c.kind) for c in result.checks} == {("error", "timeout")}
    sleep_line = line_of(folder / "app.py", "await asyncio.sleep(3600)")
    assert {(c.site["function"], c.site["line"], c.site["running"]) for c in result.checks} == {
        ("lifespan", sleep_line, False)
    }
    assert len({c.cause for c in result.checks}) == 1
    text = human_problem(result, PLAIN)
    assert text.count(f"p5_lifespan/app.py, line {sleep_line}, in lifespan") == 1, text
    assert "3 checks were stopped: " in text
    assert "it affects every check of this problem." in text, text


def test_a_missing_websocket_event_fails_many_checks_for_one_reason(tmp_path):
    only = ["history_starts_empty", "history_comes_before_join", "message_echoed_to_sender", "rooms_are_isolated"]
    result, _ = grade_case(tmp_path, 3, "join_event_never_sent", only)
    checks = by_id(result)
    assert checks["history_starts_empty"].status == "pass"
    waiting = [checks[name] for name in only[1:]]
    assert {(c.status, c.kind) for c in waiting} == {("fail", "assertion")}
    assert all('"type": "join"' in c.message for c in waiting), [c.message for c in waiting]
    assert len({c.cause for c in waiting}) == 1
    (members,) = causes.groups(result.checks).values()
    text = human_problem(result, PLAIN)
    assert text.count(causes.headline(members)) == 1 and "3 checks failed: " in text, text


def test_a_websocket_that_is_never_accepted_names_the_line_it_waits_on(tmp_path):
    only = ["history_starts_empty", "message_echoed_to_sender"]
    result, folder = grade_case(tmp_path, 3, "accept_never_happens", only)
    wait_line = line_of(folder / "app.py", "await asyncio.Event().wait()")
    assert {(c.status, c.kind) for c in result.checks} == {("fail", "assertion")}
    assert {(c.site["function"], c.site["line"]) for c in result.checks} == {("connect", wait_line)}
    assert all(f"p3_chat_rooms/app.py, line {wait_line}, in connect" in c.message for c in result.checks)
    assert len({c.cause for c in result.checks}) == 1


def test_a_real_server_check_after_a_hang_is_blocked_without_starting_uvicorn(tmp_path):
    only = ["startup_opens_in_memory_db", "uvicorn_sigterm_writes_stats"]
    result, _ = grade_case(tmp_path, 5, "busy_startup", only)
    checks = by_id(result)
    first, served = checks["startup_opens_in_memory_db"], checks["uvicorn_sigterm_writes_stats"]
    assert (served.status, served.kind, served.blocked_by) == ("error", "timeout", first.id), served.message
    assert served.message.startswith(
        f"Not tried: check {first.id} already found your code stuck (your code was running at p5_lifespan/app.py"
    ), served.message
    assert served.site == first.site and served.cause == first.cause != ""
    # The uvicorn check's own waits (boot, startup, SIGTERM) took no time at all.
    assert served.duration_s < 1.0, served.duration_s


def test_a_real_server_check_that_does_not_reach_the_stuck_place_still_runs(tmp_path):
    only = ["history_starts_empty", "real_server_end_to_end", "real_server_refusal"]
    result, _ = grade_case(tmp_path, 3, "accept_never_happens", only)
    checks = by_id(result)
    chat = checks["real_server_end_to_end"]
    assert (chat.status, chat.kind, chat.blocked_by) == ("error", "timeout", "history_starts_empty"), chat.message
    assert chat.cause == checks["history_starts_empty"].cause != ""
    # Refusing happens before the stuck accept(), so the refusal check serves the app and passes.
    assert checks["real_server_refusal"].status == "pass", checks["real_server_refusal"].message


def test_a_wait_ends_early_only_where_this_check_meets_the_known_hang(tmp_path, monkeypatch):
    import contextlib
    import importlib.util
    import threading
    import time

    from workbook import grading
    from workbook.hangs import HangStopped, Sampler

    folder = tmp_path / "p9_spin"
    folder.mkdir()
    (folder / "spin.py").write_text("def spin(stop):\n    while not stop.is_set():\n        pass\n")
    spec = importlib.util.spec_from_file_location("spin_for_test", folder / "spin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stop = threading.Event()

    def spin() -> None:
        with contextlib.suppress(HangStopped):  # how a stuck thread is stopped
            module.spin(stop)

    earlier = threading.Thread(target=spin, daemon=True)
    earlier.start()
    time.sleep(0.05)
    (site,) = Sampler(folder).threads(set()).values()
    for key, value in {
        "problem_dir": folder,
        "first_stuck": (site, "first_check"),
        "threads_before": {earlier.ident},
        "waits": grading.WaitHistory(),
        "check_id": "this_check",
    }.items():
        monkeypatch.setitem(grading.state, key, value)
    try:
        # A thread stuck there since an earlier check does not cut this check's wait short.
        assert grading.within(2.0, lambda: time.sleep(0.3) or "answered", "an answer") == "answered"

        def meets_the_hang() -> None:
            this_check = threading.Thread(target=spin, daemon=True)
            this_check.start()
            this_check.join()

        started = time.monotonic()
        try:
            grading.within(2.0, meets_the_hang, "an answer")
        except grading.CheckTimeout as stopped:
            assert stopped.blocked_by == "first_check", str(stopped)
            assert "stuck at the same place as check first_check" in str(stopped)
        else:
            raise AssertionError("a wait at the known hang was not cut short")
        assert time.monotonic() - started < 1.5
    finally:
        stop.set()
