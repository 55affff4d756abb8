"""Virtual environments for code versions that name a requirements file.

One environment per requirements content and interpreter, once per host, under the envs folder:
`<envs>/<key>/` (key: the SHA-256 of the file's bytes, the interpreter's path and its version).
One process builds it, under an exclusive lock on `<key>.lock`; the others wait for it and use
what it built. It is built under a temporary name and renamed into place once pip succeeded, so
a folder named by its key is always complete; pip's output is kept in `<key>.log`.

A failed build is remembered in `<key>.failed` (pip's last lines): every later ask for the same
key fails at once with that reason, without running pip again, until the file or the interpreter
changes (a new key) or someone deletes the `.failed` file. Nothing hangs: a build that outlives
SWEEPLAB_ENV_BUILD_TIMEOUT_S is killed, with all pip started, and fails like any other.

pip's own settings (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, ...) pass through from the
worker's environment, so an offline host builds from a wheelhouse; sweeplab's tokens do not.
The standard library only: a remote worker imports this without the database.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from service.execution.command import SECRET_SETTINGS, last_lines
from service.execution.sandbox import ScriptView, launch_command

# How a build step may run: the view of the folder it builds into (None: as the worker runs).
# pip runs the packages' own build code (an sdist's setup.py), code as untrusted as any script.
BuildView = Callable[[Path], ScriptView | None]

FAILED_LINES = 8  # of pip's output, kept as the reason a build failed
_interpreters: dict[tuple[str, int], Interpreter] = {}  # by (path, mtime)
_interpreters_lock = threading.Lock()


class EnvironmentFailed(Exception):
    """The environment could not be built (now, or by an earlier try): the reason says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


PROBE = ("import sys\nprint(sys.version.replace('\\n', ' '))\ntry:\n    import pip\n"
         "    print(pip.__version__)\nexcept ImportError:\n    print('')\n")
PIP_PYTHON_OPTION = (22, 3)  # pip's `--python`: install into another interpreter's environment


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # `sys.version`, with its build
    pip: tuple[int, ...] | None  # its own pip's version, if it has one


def interpreter(python: str) -> Interpreter:
    """What the interpreter is, asked once per binary (its path and mtime)."""
    resolved = shutil.which(python) or python
    try:
        mtime = os.stat(resolved).st_mtime_ns
    except OSError:
        raise EnvironmentFailed(f"environment could not be built: no interpreter {python}") \
            from None
    with _interpreters_lock:
        known = _interpreters.get((resolved, mtime))
    if known is not None:
        return known
    try:
        printed = subprocess.run([resolved, "-c", PROBE], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as error:
        raise EnvironmentFailed(f"environment could not be built: the interpreter {python} "
                                f"does not run ({error})") from None
    pip = tuple(int(part) for part in re.findall(r"\d+", printed[1])[:2]) if \
        len(printed) > 1 and printed[1] else None
    found = Interpreter(python, printed[0] if printed else "", pip)
    with _interpreters_lock:
        _interpreters[(resolved, mtime)] = found
    return found


def environment_key(requirements: bytes, python: str) -> str:
    """What names an environment: its requirements' bytes, the interpreter and its version."""
    digest = hashlib.sha256(requirements)
    digest.update(b"\0" + python.encode() + b"\0" + interpreter(python).version.encode())
    return digest.hexdigest()


def pip_env() -> dict[str, str]:
    """The environment pip runs with: the worker's own (pip's settings included), less
    sweeplab's secrets; no version check, which would reach for the network."""
    env = {name: value for name, value in os.environ.items() if name not in SECRET_SETTINGS}
    env.pop("PYTHONPATH", None)  # the worker's own packages are none of the new environment's
    env.pop("VIRTUAL_ENV", None)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def environment_python(envs_dir: Path, requirements: Path, base_python: str,
                       timeout_s: float = 900.0, build_view: BuildView | None = None) -> Path:
    """The python of the environment built for `requirements` with `base_python`: built
    now if this host has none yet, or raise EnvironmentFailed (at once, for a build that
    failed before)."""
    try:
        content = requirements.read_bytes()
    except OSError as error:
        raise EnvironmentFailed(f"environment could not be built: cannot read the "
                                f"requirements file ({error.strerror})") from None
    key = environment_key(content, base_python)
    folder = envs_dir / key
    python = folder / "bin" / "python"
    if python.exists():
        return python
    _raise_if_failed(envs_dir / f"{key}.failed")
    envs_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(envs_dir / f"{key}.lock"):
        if not python.exists():  # another process may have built it while we waited
            _raise_if_failed(envs_dir / f"{key}.failed")
            _build(envs_dir, key, requirements, base_python, timeout_s, build_view)
    return python


def _raise_if_failed(failed: Path) -> None:
    try:
        reason = failed.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    raise EnvironmentFailed(reason)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One holder at a time, across processes (and threads: each opens its own file)."""
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(envs_dir: Path, key: str, requirements: Path, base_python: str,
           timeout_s: float, build_view: BuildView | None) -> None:
    staging = envs_dir / f".{key}-{uuid.uuid4().hex}"
    staging.mkdir()  # first, so a sandboxed build can be given it to write
    view = build_view(staging) if build_view else None
    deadline = time.monotonic() + timeout_s
    steps = _steps(staging, requirements.resolve(), base_python)
    try:
        with open(envs_dir / f"{key}.log", "a", encoding="utf-8") as log:
            log.write(f"=== building {key} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')} "
                      f"with {base_python} from {requirements}\n")
            for argv in steps:
                problem = _step(argv, view, log, deadline, timeout_s)
                if problem:
                    _remember_failure(envs_dir, key, problem)
            log.write("=== built\n")
        os.rename(staging, envs_dir / key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _steps(staging: Path, requirements: Path, base_python: str) -> list[list[str]]:
    """The commands that build it. With an interpreter whose own pip has `--python`, the venv
    is made without pip and that pip installs into it: measured 2.5 s, where seeding each
    venv with its own pip (ensurepip) took 15 s before pip even started."""
    python = str(staging / "bin" / "python")
    install = ["install", "--no-input", "-r", str(requirements)]
    pip = interpreter(base_python).pip
    if pip is not None and pip >= PIP_PYTHON_OPTION:
        return [[base_python, "-m", "venv", "--without-pip", str(staging)],
                [base_python, "-m", "pip", "--python", python, *install]]
    return [[base_python, "-m", "venv", str(staging)],
            [python, "-m", "pip", *install]]


def _step(argv: list[str], view: ScriptView | None, log: IO[str], deadline: float,
          timeout_s: float) -> str | None:
    """Run one step with its output in the log; what went wrong, or None."""
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    start = log.tell()
    launch = launch_command(argv, view)
    try:
        child = launch.popen(stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             env=pip_env(),
                             start_new_session=True)  # its own group: pip's children too
    except OSError as error:
        launch.ended()
        return f"could not start {argv[0]}: {error.strerror}"
    try:
        code = child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(child)
        return f"timed out after {timeout_s:g} s (SWEEPLAB_ENV_BUILD_TIMEOUT_S)"
    finally:
        limit = launch.ended()
    if limit:
        return limit
    if code == 0:
        return None
    log.flush()
    with open(log.name, encoding="utf-8", errors="replace") as printed:
        printed.seek(start)
        tail = last_lines(printed.read(), FAILED_LINES)
    return tail or f"{argv[0]} exited with code {code}"


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _remember_failure(envs_dir: Path, key: str, problem: str) -> None:
    """Write `<key>.failed` (whole, by a rename) and raise its reason."""
    reason = f"environment could not be built: {problem}"
    temp = envs_dir / f".{key}.failed-{uuid.uuid4().hex}"
    temp.write_text(reason, encoding="utf-8")
    os.replace(temp, envs_dir / f"{key}.failed")
    raise EnvironmentFailed(reason)
