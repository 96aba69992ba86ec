"""The workbook as a library: what each `workbook` command does, callable from tests and
scripts without click (as otter-grader's `otter.api` is). The commands in workbook/cli.py,
learner_commands.py and instructor_commands.py parse their options, call one of these,
render what it returns and choose the exit status.

Functions return results (dataclasses) and never print or exit. Errors are exceptions:
`UsageProblem` for arguments that cannot work together (the CLI exits 2), `WorkbookError`
for anything else the user must fix (exit 1). A KeyboardInterrupt during grading
propagates once the grading processes are stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from workbook import integrity
from workbook.engine import CheckResult, GraderError, ProblemResult, discover_checks, grade_many, select_checks
from workbook.here import problem_here
from workbook.manifest import Manifest, Problem
from workbook.milestones import next_unsolved
from workbook.results import Status
from workbook.sandbox import SANDBOX_ENV, SWITCHED_OFF, isolation
from workbook.state import (
    Progress,
    hints_revealed,
    is_solved,
    load_state,
    record_hints_revealed,
    save_or_warn,
    with_results,
)
from workbook.target import TargetError, refuse_link
from workbook.workspace import NoWorkspace

# What one command alone needs (the gradebook, the class report, backups, starters, the
# watcher, the doctor) is imported inside its function: the CLI imports this module at every
# start, and a learner's `workbook check` should not pay for the rest.
if TYPE_CHECKING:
    from workbook.backups import Backup
    from workbook.doctor import Finding
    from workbook.documents import ClassDocument
    from workbook.gradebook import Shard
    from workbook.terminal import Style

GRADERS_INCOMPLETE = "The workbook's graders/ folder is incomplete; reinstall it."
KEYWORD_IDS_SHOWN = 20


class WorkbookError(Exception):
    """Something the user must fix; the message says what, as a sentence."""


class UsageProblem(WorkbookError):
    """Arguments that cannot work (a usage error); `option` names the one at fault, if one is."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class UnusableInput(UsageProblem):
    """An input folder or file the command line names that cannot be used as it is (an OUT
    holding another run, a SUBMISSIONS folder without submissions): a usage error, said in
    one line."""


# --- which problem ----------------------------------------------------------------------


def default_problem(manifest: Manifest, exercises: Path) -> Problem:
    """The problem a command without a number works on: the one whose folder we are in,
    else the first one not yet passed, else the first."""
    here = problem_here(manifest, [exercises])
    return here or next_unsolved(manifest, load_state()) or manifest.problems[0]


def select_problems(
    manifest: Manifest, problems: Iterable[Problem], all_problems: bool, target: Path, exercises: Path | None
) -> list[Problem]:
    """What `check` grades: the problems named, or all, or the one whose folder we are in
    (in `target` or `exercises`), or the first unsolved (bonus problems last; outside a
    workspace, `exercises` is None and nothing is solved)."""
    if all_problems:
        return list(manifest.problems)
    named = list({problem.number: problem for problem in problems}.values())
    if named:
        return named
    here = problem_here(manifest, [target] if exercises is None else [target, exercises])
    if here is not None:
        return [here]
    state = Progress() if exercises is None else load_state()
    in_order = manifest.core_problems + manifest.bonus_problems
    unsolved = [problem for problem in in_order if not is_solved(state, problem.slug)]
    return unsolved[:1] or list(manifest.problems)


# --- check ------------------------------------------------------------------------------


@dataclass
class CheckPlan:
    """What a `check` will grade, settled before any grading starts."""

    manifest: Manifest
    problems: list[Problem]
    target: Path  # the folder laid out like exercises/ that is graded
    learner_run: bool  # the learner's own exercises/: the progress records the results
    submission: bool  # someone else's folder (--dir): graded from a sanitised copy, in a sandbox
    keyword: str | None
    seed: int | None
    jobs: int
    graders: Path | None
    grader_set: integrity.GraderSet
    check_count: int  # checks to grade (0 when the graders cannot be read: grading says why)
    before: Progress  # the progress before grading


@dataclass
class CheckRun:
    """What a `check` found. `after` is the progress once the results are recorded (the same
    as `before` when the run is not the learner's); `save_note` says why it could not be saved."""

    plan: CheckPlan
    results: list[ProblemResult]
    after: Progress
    save_note: str | None = None

    @property
    def passed(self) -> bool:
        return all(result.status == Status.PASS for result in self.results)

    @property
    def exit_code(self) -> int:
        """0 when every check passed, 1 otherwise (the CLI's exit status)."""
        return 0 if self.passed else 1

    @property
    def graded_slugs(self) -> set[str]:
        return {result.problem.slug for result in self.results}


def plan_check(
    manifest: Manifest,
    problems: Iterable[Problem] = (),
    *,
    exercises: Path | None = None,
    solutions: Path | None = None,
    directory: Path | None = None,
    all_problems: bool = False,
    keyword: str | None = None,
    seed: int | None = None,
    jobs: int = 2,
    graders: Path | None = None,
    allow_modified_graders: bool = False,
    no_sandbox: bool = False,
) -> CheckPlan:
    """Settle what to grade: the target (`solutions` or `directory` when given, else
    `exercises`; relative paths are taken from the working directory), the problems, the
    checks `keyword` selects, the graders and the sandbox. Raises UsageProblem for options
    that contradict each other, an unusable --dir or a -k that matches no check;
    WorkbookError when someone else's code would run unsandboxed.

    `exercises` is the learner's own folder, None (the default) outside a workspace:
    grading `solutions` or `directory` then works all the same, since only a run of the
    learner's own folder records progress; grading nothing else raises NoWorkspace."""
    problems = list(problems)
    if solutions and directory:
        raise UsageProblem("Use either --solutions or --dir, not both.")
    if all_problems and problems:
        raise UsageProblem("Give problem numbers or --all, not both.")
    if directory:
        try:
            refuse_link(directory)
        except TargetError as exc:
            raise UsageProblem(str(exc), "--dir") from exc
    if exercises is None and not (directory or solutions):
        raise NoWorkspace()
    # The grading processes start in folders of their own.
    exercises = exercises.resolve() if exercises is not None else None
    target = (directory or solutions or exercises or Path()).resolve()
    learner_run = target == exercises  # a -k run is recorded too: it updates the checks it ran
    selected = select_problems(manifest, problems, all_problems, target, exercises)
    if graders is not None:  # the check list (for -k and the live count) comes from these graders
        selected = [replace(problem, graders=graders.resolve()) for problem in selected]
    _check_keyword(selected, keyword)
    selected = _with_matching_checks(selected, keyword)
    # Read before grading: the learner's code runs meanwhile and could write the state file.
    before = Progress() if exercises is None else load_state()
    # Reports record which graders graded the run (and whether the bundled ones were
    # modified); only `workbook grade` refuses modified ones.
    grader_set = integrity.describe(graders, allow_modified=allow_modified_graders)
    if directory:  # someone else's code: only in a sandbox, unless --no-sandbox says otherwise
        require_sandbox(grader_set, no_sandbox)
    else:
        grader_set.isolation, grader_set.no_sandbox = isolation().label, no_sandbox
    return CheckPlan(
        manifest=manifest,
        problems=selected,
        target=target,
        learner_run=learner_run,
        submission=directory is not None,
        keyword=keyword,
        seed=seed,
        jobs=jobs,
        graders=graders,
        grader_set=grader_set,
        check_count=_check_count(selected, keyword),
        before=before,
    )


def run_check(
    plan: CheckPlan,
    *,
    on_result: Callable[[ProblemResult], None] | None = None,
    on_check: Callable[[CheckResult], None] | None = None,
) -> CheckRun:
    """Grade `plan`, telling `on_check` of each check and `on_result` of each problem as
    they finish; a learner run's results go into the progress. Raises WorkbookError when
    the graders or the target cannot be used."""
    options: dict[str, Any] = dict(jobs=plan.jobs, keyword=plan.keyword, seed=plan.seed, graders=plan.graders)
    try:
        # Someone else's submission (--dir) is graded from a copy of the learner's work
        # (workbook/target.py), so nothing else in it (a conftest.py, a .pth) is loaded.
        grade_all = _sanitised_grading() if plan.submission else grade_many
        results = grade_all(plan.problems, plan.target, on_result=on_result, on_check=on_check, **options)
    except GraderError as exc:
        raise WorkbookError(f"{exc}. {GRADERS_INCOMPLETE}") from exc
    except TargetError as exc:
        raise WorkbookError(str(exc)) from exc
    if not plan.learner_run:
        return CheckRun(plan, results, plan.before)
    all_ids = _all_check_ids(plan.problems) if plan.keyword else None
    after = with_results(plan.before, results, all_ids)
    return CheckRun(plan, results, after, save_or_warn(after))


class CheckOptions(TypedDict, total=False):
    """The keyword options of plan_check (see there)."""

    exercises: Path | None
    solutions: Path | None
    directory: Path | None
    all_problems: bool
    keyword: str | None
    seed: int | None
    jobs: int
    graders: Path | None
    allow_modified_graders: bool
    no_sandbox: bool


def check(
    manifest: Manifest,
    problems: Iterable[Problem] = (),
    *,
    on_result: Callable[[ProblemResult], None] | None = None,
    on_check: Callable[[CheckResult], None] | None = None,
    **options: Unpack[CheckOptions],
) -> CheckRun:
    """`workbook check`: plan_check, then run_check (see both for the options and errors)."""
    return run_check(plan_check(manifest, problems, **options), on_result=on_result, on_check=on_check)


def _sanitised_grading() -> Callable[..., list[ProblemResult]]:
    """Grading of a copy holding only the learner files (imported only when --dir needs it)."""
    from workbook.gradebook import grade_sanitised

    return grade_sanitised


def _all_check_ids(selected: list[Problem]) -> dict[str, list[str]]:
    """Every check id of each problem, so a -k run's result can be merged into the full one."""
    return {problem.slug: [check.id for check in discover_checks(problem)] for problem in selected}


def _check_count(selected: list[Problem], keyword: str | None) -> int:
    try:
        return sum(len(select_checks(discover_checks(problem), keyword)) for problem in selected)
    except GraderError:
        return 0


def _check_keyword(selected: list[Problem], keyword: str | None) -> None:
    """-k that matches no check is a typo, not a result: say which ids exist."""
    if not keyword:
        return
    try:
        checks = [check for problem in selected for check in discover_checks(problem)]
    except GraderError:
        return  # reported as such by the grading itself
    if not select_checks(checks, keyword):
        more = len(checks) - KEYWORD_IDS_SHOWN
        ids = ", ".join(check.id for check in checks[:KEYWORD_IDS_SHOWN]) + (f", … ({more} more)" if more > 0 else "")
        raise UsageProblem(f"no check id contains {keyword!r}. The ids are: {ids}", "-k")


def _with_matching_checks(selected: list[Problem], keyword: str | None) -> list[Problem]:
    """With -k, only the problems that have a matching check: `--all -k token` must not
    report the others as failed with 0/0 checks."""
    if not keyword:
        return selected
    try:
        return [problem for problem in selected if select_checks(discover_checks(problem), keyword)]
    except GraderError:
        return selected  # reported as such by the grading itself


# --- graders and sandbox, for someone else's code --------------------------------------


def require_sandbox(grader_set: integrity.GraderSet, no_sandbox: bool) -> None:
    """Record the isolation in `grader_set` (so every report names it); WorkbookError when
    there is no working sandbox for someone else's code and `no_sandbox` was not given."""
    found = isolation()
    grader_set.isolation = found.label
    grader_set.no_sandbox = no_sandbox
    if found.active or no_sandbox:
        return
    if found.reason == SWITCHED_OFF:
        raise WorkbookError(
            f"The sandbox is switched off by {SWITCHED_OFF} in your environment. Without it, the code you grade "
            f"can read and change anything your user can. Unset {SANDBOX_ENV} (bubblewrap is used when it works), "
            "or pass --no-sandbox (every report will say so)."
        )
    raise WorkbookError(
        f"No sandbox works on this machine ({found.reason}). Without it, the code you grade can read and change "
        "anything your user can. Install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`), "
        "or pass --no-sandbox (every report will say so)."
    )


def trusted_grader_set(graders: Path | None, allow_modified: bool) -> integrity.GraderSet:
    """The grader set a class is graded with; WorkbookError when the bundled graders were
    modified and that was not allowed."""
    grader_set = integrity.describe(graders, allow_modified=allow_modified)
    refusal = integrity.refusal(grader_set)
    if refusal:
        raise WorkbookError(refusal)
    return grader_set


# --- grade and merge (a class) -----------------------------------------------------------


@dataclass
class ClassPlan:
    """What `workbook grade` will grade, settled (and OUT checked) before any grading."""

    submissions_dir: Path
    out_dir: Path
    problems: list[Problem]
    grader_set: integrity.GraderSet
    shard: Shard | None
    names: list[str]  # the submissions of this shard
    skip: list[Path] = field(default_factory=list)
    jobs: int = 2
    problem_jobs: int = 2
    resume: bool = False
    html_path: Path | None = None

    @property
    def modified_graders(self) -> bool:
        """Grading with bundled graders that differ from their checksums (allowed)."""
        return self.grader_set.source == "bundled" and not self.grader_set.verified


@dataclass
class ClassRun:
    """A graded (or merged) class: one report document per submission, in the gradebook's
    order, with the gradebook in `out_dir` and the class report page at `html_path`."""

    out_dir: Path
    documents: list[ClassDocument]
    html_path: Path | None = None
    # The reports this run graded itself, in the order they finished: not those --resume
    # kept, and none for a merge (their timings belong to earlier runs).
    graded: list[ClassDocument] = field(default_factory=list)
    merged: bool = False

    @property
    def errors(self) -> list[ClassDocument]:
        """The reports of the submissions the workbook could not grade."""
        return [document for document in self.documents if document.error]


def plan_grade(
    manifest: Manifest,
    submissions_dir: Path,
    out_dir: Path,
    *,
    problems: Iterable[Problem] = (),
    jobs: int = 2,
    problem_jobs: int = 2,
    shard: str | None = None,
    html_path: Path | None = None,
    graders: Path | None = None,
    allow_modified_graders: bool = False,
    resume: bool = False,
    no_sandbox: bool = False,
) -> ClassPlan:
    """Settle a class grading: the problems (default: all), the shard ("I/N"), the graders,
    the sandbox and OUT. Raises UsageProblem for a malformed shard; UnusableInput (a
    UsageProblem) for a SUBMISSIONS without submissions or an OUT that cannot be used or
    holds a run (without `resume`); WorkbookError for graders or a sandbox that cannot be
    used (and click exceptions, from workbook/classout.py, for another `grade` writing into
    OUT or an unwritable --html)."""
    from workbook.classout import check_out_folder, release_out_lock
    from workbook.gradebook import Shard, submissions

    chosen = sorted({problem.number: problem for problem in problems}.values(), key=lambda problem: problem.number)
    try:
        parsed = Shard.parse(shard) if shard is not None else None
    except ValueError as exc:
        raise UsageProblem(str(exc), "--shard") from exc
    grader_set = trusted_grader_set(graders, allow_modified_graders)
    require_sandbox(grader_set, no_sandbox)
    _require_submissions(manifest, submissions_dir, submissions(submissions_dir, [out_dir]))  # before OUT is made
    # Every problem with OUT surfaces here, before a single submission is graded.
    skip = check_out_folder(submissions_dir, out_dir, html_path, parsed, resume)
    names = submissions(submissions_dir, skip)
    try:
        _require_submissions(manifest, submissions_dir, names)
    except UnusableInput:
        release_out_lock()  # OUT's lock, taken by check_out_folder
        raise
    return ClassPlan(
        submissions_dir=submissions_dir,
        out_dir=out_dir,
        problems=chosen or list(manifest.problems),
        grader_set=grader_set,
        shard=parsed,
        names=parsed.take(names) if parsed else names,
        skip=list(skip),
        jobs=jobs,
        problem_jobs=problem_jobs,
        resume=resume,
        html_path=html_path,
    )


def _require_submissions(manifest: Manifest, submissions_dir: Path, names: list[str]) -> None:
    """UnusableInput when SUBMISSIONS holds no submission folder, or is one submission
    itself (its folders are the problems'): a class of none must not be a success."""
    from workbook.safetext import shown_name

    where = shown_name(str(submissions_dir))
    slugs = {problem.slug for problem in manifest.problems}
    if slugs & set(names):
        raise UnusableInput(
            f"{where} looks like one submission (it holds problem folders such as {min(slugs & set(names))}); "
            "pass the folder that holds one folder per submission."
        )
    if not names:
        raise UnusableInput(
            f"no submission folders in {where}: SUBMISSIONS must hold one folder per submission, "
            "each laid out like exercises/."
        )


def grade(plan: ClassPlan, *, progress: Any = None) -> ClassRun:
    """Grade the class of `plan`: OUT/submissions/NAME.json as each submission is graded,
    OUT/gradebook.csv at the end, and the class report page when asked. `progress`: a
    workbook.classprogress.ClassProgress (or anything with its methods), closed when grading
    ends. Raises
    workbook.gradebook.Interrupted on Ctrl-C, with what was saved."""
    from workbook.classout import release_out_lock
    from workbook.gradebook import grade_class

    graded: list[ClassDocument] = []

    def heard(document: ClassDocument) -> None:
        graded.append(document)
        if progress is not None:
            progress(document)

    try:
        try:
            documents = grade_class(
                plan.submissions_dir,
                plan.out_dir,
                plan.problems,
                plan.grader_set,
                jobs=plan.jobs,
                problem_jobs=plan.problem_jobs,
                shard=plan.shard,
                resume=plan.resume,
                progress=heard,
                on_kept=progress.keep if progress is not None else None,
                skip=plan.skip,
            )
        finally:
            if progress is not None:
                progress.close()
    finally:
        release_out_lock()
    write_class_report(plan.html_path, documents)
    return ClassRun(plan.out_dir, documents, plan.html_path, graded=graded)


def merge(manifest: Manifest, out_dirs: Iterable[Path], destination: Path, html_path: Path | None = None) -> ClassRun:
    """Combine the OUT folders of `workbook grade --shard` runs into one gradebook in
    `destination` (and a class report page at `html_path`). Raises
    workbook.gradebook.MergeError naming the first report or run file that is not valid."""
    from workbook.gradebook import merge as merge_folders

    documents = merge_folders(list(out_dirs), destination, list(manifest.problems))
    write_class_report(html_path, documents)
    return ClassRun(destination, documents, html_path, merged=True)


def write_class_report(path: Path | None, documents: list[ClassDocument]) -> None:
    """The class report page at `path` (nothing when None); WorkbookError when it cannot be written."""
    if path is None:
        return
    from workbook.classreport import class_report
    from workbook.reportfiles import atomic_write
    from workbook.safetext import log_safe

    try:
        # Titles in merged reports are untrusted too: no control sequence, no workflow command.
        atomic_write(path, log_safe(class_report(documents)))
    except OSError as exc:
        raise WorkbookError(f"cannot write the class report to {path}: {exc} (the gradebook is saved)") from exc


# --- the learner's loop: hint, reset, watch, doctor -------------------------------------


@dataclass
class Hints:
    """The hints `hint` reveals: (index, text) pairs, and how many of `total` are now seen."""

    problem: Problem
    shown: list[tuple[int, str]]
    seen: int
    save_note: str | None = None

    @property
    def left(self) -> int:
        return len(self.problem.hints) - self.seen


def hint(problem: Problem, *, show_all: bool = False) -> Hints:
    """Reveal the next hint of `problem` (every hint with `show_all`, or once all were
    seen) and remember how many the learner has seen."""
    hints = problem.hints
    if not hints:
        return Hints(problem, [], 0)
    state = load_state()
    seen = hints_revealed(state, problem.slug)
    if show_all or seen >= len(hints):
        shown, seen = range(len(hints)), len(hints)
    else:
        shown, seen = range(seen, seen + 1), seen + 1
    record_hints_revealed(state, problem.slug, seen)
    return Hints(problem, [(index, hints[index]) for index in shown], seen, save_or_warn(state))


@dataclass
class Reset:
    """What `reset` did: the files that differed from the starter (none: nothing was done)
    and where the learner's files were backed up."""

    problem: Problem
    changed: list[str]
    backup: Backup | None = None


def starter_differences(problem: Problem, exercises: Path) -> list[str]:
    """The files of `problem` in `exercises` that differ from its starter files."""
    from workbook import backups
    from workbook.starters import StarterError, starter_files

    try:
        return backups.changed_files(exercises / problem.slug, starter_files(problem.slug))
    except (StarterError, backups.BackupError) as exc:
        raise WorkbookError(str(exc)) from exc


def reset(problem: Problem, exercises: Path) -> Reset:
    """Put back the starter files of `problem` in `exercises`, after backing up the
    learner's (nothing happens when they already are the starter files). WorkbookError
    when the starters or the backup cannot be read or written."""
    from workbook import backups

    changed = starter_differences(problem, exercises)
    if not changed:
        return Reset(problem, [])
    try:
        return Reset(problem, changed, backups.reset(exercises / problem.slug, problem.slug))
    except backups.BackupError as exc:
        raise WorkbookError(str(exc)) from exc
    except OSError as exc:
        raise WorkbookError(f"{exc}. Your files were backed up before anything was written.") from exc


def find_backup(problem: Problem, name: str) -> Backup:
    """The backup of `problem` called `name` (or `latest`); WorkbookError when there is none."""
    from workbook import backups

    try:
        return backups.find_backup(problem.slug, name)
    except backups.BackupError as exc:
        raise WorkbookError(str(exc)) from exc


def restore(problem: Problem, exercises: Path, backup: Backup) -> Backup:
    """Put `backup` back into the folder of `problem`; returns the backup of the files it replaced."""
    from workbook import backups

    try:
        return backups.restore(exercises / problem.slug, problem.slug, backup)
    except backups.BackupError as exc:
        raise WorkbookError(str(exc)) from exc
    except OSError as exc:
        raise WorkbookError(f"{exc}. Your files were backed up before anything was written.") from exc


def watch(
    manifest: Manifest,
    problem: Problem | None,
    exercises: Path,
    *,
    style: Style,
    verbose: bool = False,
    max_runs: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """Re-grade a problem of `exercises` on every save, moving on as problems get solved,
    drawing on `echo` (default: click.echo). `problem` None: the problem whose folder we
    are in, else the first unsolved; a problem chosen either way is kept even once solved.
    Stops after `max_runs` gradings when given (scripts and tests); otherwise runs until
    Ctrl-C (KeyboardInterrupt). Returns the exit status: 0 when the last grading passed."""
    from workbook.watcher import Watcher

    exercises = exercises.resolve()  # the grading processes start in folders of their own
    explicit = problem is not None or problem_here(manifest, [exercises]) is not None
    chosen = problem or default_problem(manifest, exercises)
    options: dict[str, Any] = {"echo": echo} if echo is not None else {}
    watcher = Watcher(
        manifest, exercises, style=style, verbose=verbose, clear_screen=style.color or style.unicode, **options
    )
    try:
        return watcher.run(chosen, max_runs=max_runs, stay=explicit)
    except GraderError as exc:
        raise WorkbookError(f"{exc}. {GRADERS_INCOMPLETE}") from exc


@dataclass
class DoctorReport:
    """Each finding of `doctor`, in the order a learner should fix them."""

    findings: list[Finding]

    @property
    def problems(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.ok]

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0


def doctor(exercises: Path, solutions: Path, *, grading: bool = True) -> DoctorReport:
    """Is this machine ready: Python, packages, bcrypt, folders, sandbox, and (unless
    `grading` is False) the grading of a reference solution."""
    from workbook.doctor import run_all

    return DoctorReport(run_all(exercises.resolve(), solutions.resolve(), grading=grading))
