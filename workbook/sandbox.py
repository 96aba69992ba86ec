"""Where submitted code runs: a bubblewrap sandbox when the machine has a working one, else a
plain child process with the resource limits the platform supports.

Issue 11, item 2. The sandbox (bubblewrap, the sandbox Flatpak uses) gives the grading
process a PID namespace of its own (everything it starts dies with it), no network but its
own loopback, a read-only view of the system, the Python environment, the workbook's package
and graders and the one problem folder under grading, and a writable scratch folder. The
environment is reduced to an allowlist, and rlimits bound memory, file size, processes and
CPU time.

Set WORKBOOK_SANDBOX=off to grade without the sandbox (the fallback), e.g. to compare.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workbook.manifest import MANIFEST_ENV, PROBES_FILE, ROOT, has_probe_menu
from workbook.workspace import BUNDLED_GRADERS, BUNDLED_SOLUTIONS, MANIFEST_PATH

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

SANDBOX_ENV = "WORKBOOK_SANDBOX"
SANDBOXED_ENV = "WORKBOOK_SANDBOXED"  # set inside the sandbox only
SWITCHED_OFF = f"{SANDBOX_ENV}=off"  # the reason when the sandbox was switched off, not missing
NOBODY = 65534  # the user inside the sandbox's own user namespace
# The reference solutions (uvicorn, anyio's worker threads, bcrypt) pass with half of this
# (benchmarks/RESULTS.md); 1 GiB leaves room, a memory bomb does not fit.
ADDRESS_SPACE_BYTES = 1 << 30
# glibc reserves 64 MiB of address space for each malloc arena and gives each new thread an
# arena of its own, up to 8 per core: ten live threads (a check sending concurrent requests
# to `def` endpoints) filled the 1 GiB above while using a fraction of it. Two arenas keep
# the limit about memory actually used.
MALLOC_ARENAS = "2"
FILE_SIZE_BYTES = 64 << 20
# Per sandbox: its user namespace counts only its own processes.
PROCESSES = 512
CPU_SECONDS = 300
# Variables the grading process may see; everything else of the instructor's environment
# (tokens, keys, CI secrets) stays outside.
ENV_ALLOWLIST = (
    *("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT", "COMSPEC", "PATHEXT", "WINDIR"),
    *("WORKBOOK_MANIFEST", "WORKBOOK_SANDBOX"),
)
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class Isolation:
    """Which isolation grading uses; `label` goes into every report and summary."""

    kind: str  # "bubblewrap" | "none"
    version: str = ""
    reason: str = ""  # why there is no sandbox, for `workbook doctor`

    @property
    def active(self) -> bool:
        return self.kind == "bubblewrap"

    @property
    def label(self) -> str:
        return f"sandbox: bubblewrap {self.version}".rstrip() if self.active else "sandbox: none"


def isolation() -> Isolation:
    """The isolation this machine gives grading (probed once per process)."""
    if os.environ.get(SANDBOX_ENV, "").lower() in ("off", "0", "no", "none"):
        return Isolation("none", reason=SWITCHED_OFF)
    return _probe()


@functools.lru_cache(maxsize=1)
def _probe() -> Isolation:
    if sys.platform != "linux":
        return Isolation("none", reason=f"bubblewrap exists only on Linux (this is {sys.platform})")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation("none", reason="bubblewrap is not installed (apt-get install bubblewrap)")
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.split()[-1]
        scratch = Path(tempfile.mkdtemp(prefix="workbook-probe-"))
        try:
            command = bubblewrap_command(["/bin/true"], scratch, visible=[], bwrap=bwrap)
            trial = subprocess.run(command, capture_output=True, text=True, timeout=10, **popen_options())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except (OSError, IndexError, subprocess.SubprocessError) as exc:
        return Isolation("none", reason=f"bubblewrap could not run: {exc}")
    if trial.returncode != 0:
        return Isolation("none", reason=f"bubblewrap fails here: {trial.stderr.strip()[:300]}")
    return Isolation("bubblewrap", version=version)


# --- building the command ----------------------------------------------------------------


def python_folders() -> list[Path]:
    """The Python environment: the venv, the interpreter's installation and site-packages."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    folders = {*prefixes, Path(sys.executable).resolve().parent}
    # Only library folders of sys.path: an editable install may put the whole checkout there.
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if path.name in ("site-packages", "dist-packages") or any(_is_under(path, p) for p in prefixes):
            folders.add(path)
    return sorted(folder for folder in folders if folder.exists())


def workbook_folders(graders: Path) -> list[Path]:
    """What the sandbox needs of the workbook: its package, manifest and graders (`grader_view`),
    never the rest of the checkout (solutions, other submissions, OUT, the state file)."""
    manifest = Path(os.environ.get(MANIFEST_ENV) or MANIFEST_PATH).resolve()
    return [ROOT / "workbook", manifest, *grader_view(graders.resolve()), *grader_view(BUNDLED_GRADERS.resolve())]


def grader_view(graders: Path) -> list[Path]:
    """What the sandbox sees of a graders folder: only the probe menus (`probes.py`) when every
    problem's grader has one, since then no grader runs in the sandbox and the checks stay
    hidden from the code they grade (issue 11); else the whole folder, for graders that
    still import the learner's code in the sandbox."""
    with contextlib.suppress(OSError):
        folders = sorted(f for f in graders.iterdir() if f.is_dir() and any(f.glob("test_*.py")))
        if folders and all(has_probe_menu(f) for f in folders):
            return [f / PROBES_FILE for f in folders]
    return [graders]


def bubblewrap_command(
    argv: list[str],
    scratch: Path,
    visible: Iterable[Path],
    *,
    mounts: Iterable[tuple[Path, Path]] = (),
    bwrap: str = "bwrap",
    cwd: Path | None = None,
) -> list[str]:
    """`argv` wrapped in bubblewrap: read-only system and `visible` paths, `mounts` (source,
    path inside) read-only, `scratch` writable, fresh /tmp, /proc and /dev, no network."""
    # A user namespace of its own, as `nobody` inside, with no capabilities.
    command = [bwrap, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    command += ["--cap-drop", "ALL", "--die-with-parent", "--new-session", "--setenv", SANDBOXED_ENV, "1"]
    for folder in SYSTEM_FOLDERS:
        if os.path.lexists(folder):
            # Merged-/usr systems make /bin a link; binding the link keeps it one.
            command += (
                ["--symlink", os.readlink(folder), folder] if os.path.islink(folder) else ["--ro-bind", folder, folder]
            )
    # Read-only kernel settings: started by root, the sandbox's user is root outside it, and
    # could otherwise write /proc/sys (kernel.core_pattern runs a program as root).
    command += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev", "--tmpfs", "/tmp"]
    command += _covers(_private_system_files()) if os.geteuid() == 0 else []
    bound = _outermost([*python_folders(), *visible])
    for path in bound:
        if not any(path == Path(folder) or _is_under(path, Path(folder)) for folder in SYSTEM_FOLDERS):
            command += ["--ro-bind", str(path), str(path)]
    # After a wheel install the reference solutions sit inside the package, in site-packages:
    # an empty folder over them, or a submission could import them and pass.
    solutions = BUNDLED_SOLUTIONS.resolve()
    if any(_is_under(solutions, path) for path in bound):
        command += ["--tmpfs", str(solutions)]
    command += _checks_hidden(BUNDLED_GRADERS.resolve(), bound)
    for source, inside in mounts:
        command += ["--ro-bind", str(source), str(inside)]
    command += ["--bind", str(scratch), str(scratch)]
    # Last: bubblewrap builds its root (and the folders leading to each bound path) in a
    # tmpfs, writable until now; only scratch and /tmp stay writable, as mounts of their own.
    command += ["--remount-ro", "/", "--chdir", str(cwd or scratch), "--", *argv]
    return command


def _checks_hidden(graders: Path, bound: list[Path]) -> list[str]:
    """After a wheel install the bundled graders sit inside the package: an empty folder over
    them with only their probe menus bound back, when no grader runs in the sandbox."""
    shown = grader_view(graders)
    if shown == [graders] or not any(_is_under(graders, path) for path in bound):
        return []
    command = ["--tmpfs", str(graders)]
    for probes in shown:
        command += ["--ro-bind", str(probes), str(probes)]
    return command


# Where owner-only files live that a root-started sandbox could read (/etc/shadow, SSH host
# keys, private TLS keys); walking /usr as well would cost seconds for one policy file.
PRIVATE_FILES_UNDER = ("/etc",)


@functools.lru_cache(maxsize=1)
def _private_system_files() -> tuple[str, ...]:
    """The files and folders under PRIVATE_FILES_UNDER that other users may not read: what
    an unprivileged sandbox could not read either (outermost only, in walk order)."""
    found: list[str] = []
    for top in PRIVATE_FILES_UNDER:
        for folder, subfolders, files in os.walk(top):
            for name in list(subfolders):
                path = os.path.join(folder, name)
                if not os.path.islink(path) and not _others_may_read(path):
                    found.append(path)
                    subfolders.remove(name)  # covered whole
            found += [
                p for p in (os.path.join(folder, n) for n in files) if not os.path.islink(p) and not _others_may_read(p)
            ]
    return tuple(found)


def _others_may_read(path: str) -> bool:
    with contextlib.suppress(OSError):
        return bool(os.stat(path).st_mode & 0o004)
    return False


def _covers(paths: Iterable[str]) -> list[str]:
    """bwrap options hiding each path: an empty read-only folder over a folder, /dev/null
    over a file."""
    options: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            options += ["--tmpfs", path, "--remount-ro", path]
        else:
            options += ["--ro-bind", "/dev/null", path]
    return options


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths without those inside another one of them (bound once, in path order)."""
    chosen: list[Path] = []
    for path in sorted({Path(p).resolve() for p in paths if os.path.exists(p)}, key=lambda p: len(p.parts)):
        if not any(path == outer or _is_under(path, outer) for outer in chosen):
            chosen.append(path)
    return sorted(chosen)


def _is_under(path: Path, folder: Path) -> bool:
    return folder in path.parents


def allowed_environment(env: dict[str, str], scratch: Path) -> dict[str, str]:
    """`env` reduced to the allowlist, with HOME and TMPDIR pointing into scratch and glibc's
    malloc arenas bounded (MALLOC_ARENAS)."""
    kept = {k: v for k, v in env.items() if k in ENV_ALLOWLIST}
    kept.update(HOME=str(scratch), TMPDIR=str(scratch), MALLOC_ARENA_MAX=MALLOC_ARENAS)
    for key in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING"):
        if key in env:
            kept[key] = env[key]
    return kept


def popen_options(cpu_seconds: int = CPU_SECONDS) -> dict:
    """Keyword arguments for `subprocess.Popen` of a grading process: its own session
    (process group) and, on POSIX, the rlimits (the process limit is set inside the sandbox,
    by `limit_processes`)."""
    if os.name != "posix":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}

    def apply() -> None:  # runs in the child between fork and exec: no locks, no imports
        set_limits(cpu_seconds)

    return {"start_new_session": True, "preexec_fn": apply}


def set_limits(cpu_seconds: int) -> None:
    """The rlimits of a grading process (issue 11): address space, file size and CPU time.
    A limit the platform lacks is skipped."""
    wanted = [
        ("RLIMIT_AS", ADDRESS_SPACE_BYTES),
        ("RLIMIT_FSIZE", FILE_SIZE_BYTES),
        ("RLIMIT_CPU", cpu_seconds),
        ("RLIMIT_CORE", 0),
    ]
    _set(wanted)


def limit_processes() -> None:
    """Inside the sandbox only: bound the number of processes. The sandbox has a user
    namespace of its own, so the kernel counts only its processes; outside, the limit would
    count every process of the instructor's user (a browser alone has hundreds). The kernel
    never applies it to root: there the PID namespace, which dies with grading, bounds it."""
    if os.environ.get(SANDBOXED_ENV) == "1":
        _set([("RLIMIT_NPROC", PROCESSES)])


def _set(wanted: list[tuple[str, int]]) -> None:
    if resource is None:
        return
    for name, value in wanted:
        limit = getattr(resource, name, None)
        if limit is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            _, hard = resource.getrlimit(limit)
            capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (capped, capped))


def wrap(
    argv: list[str],
    scratch: Path,
    visible: Iterable[Path],
    mounts: Iterable[tuple[Path, Path]] = (),
    cwd: Path | None = None,
) -> list[str]:
    """`argv` as the grading process must run it: inside bubblewrap when it works, else as is."""
    if not isolation().active:
        return argv
    bwrap = shutil.which("bwrap") or "bwrap"
    return bubblewrap_command(argv, scratch, visible, mounts=mounts, bwrap=bwrap, cwd=cwd)


def adopted_children(known: set[int]) -> list[int]:
    """This process's children that it did not start itself (`known`): orphans it adopted
    as a subreaper. Linux only (reads /proc); elsewhere none."""
    me = os.getpid()
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) in known:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_text()
                # The command name may hold spaces and parentheses; the fields follow the last ")".
                if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                    found.append(int(entry.name))
    return found


def become_subreaper() -> bool:
    """On Linux, make this process adopt its orphaned descendants (PR_SET_CHILD_SUBREAPER),
    so a child started with `start_new_session=True` cannot escape the fallback's clean-up."""
    if sys.platform != "linux":
        return False
    import ctypes  # lazy: Linux only, and only the fork server needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False
