"""One training attempt, as a worker does it: run the script, read its accuracy, say how it went."""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from service.contract import Outcome, RunStatus
from service.execution.command import (
    Entry,
    deployment_train,
    last_lines,
    params_env,
    script_env,
    train_argv,
)
from service.execution.entries import code_entry
from service.execution.environments import EnvironmentFailed
from service.execution.parsing import find_metric
from service.execution.scripts import script_sha256
from service.execution.supervise import ChildResult, start_child, supervise
from service.execution.views import training_view
from service.settings import Settings

STDOUT_NAME = "stdout.log"
STDERR_NAME = "stderr.log"
PARAMS_NAME = "params.json"  # the run's parameters, for scripts that read them from a file
TAIL_BYTES = 1 << 20
MEMORY_ERRORS = re.compile(r"MemoryError|Unable to allocate|std::bad_alloc|"
                           r"Cannot allocate memory|out of memory", re.IGNORECASE)
# a fork or a thread refused under RLIMIT_NPROC: EAGAIN, as Python and C say it
TASK_ERRORS = re.compile(r"Resource temporarily unavailable|can't start new thread|"
                         r"pthread_create")


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of a file as text; empty if it does not exist."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _last_lines(run_dir: Path) -> str:
    return last_lines(read_tail(run_dir / STDERR_NAME, 8192).strip() or read_tail(
        run_dir / STDOUT_NAME, 8192))


def limit_reached(result: ChildResult, run_dir: Path) -> str | None:
    """Which of its limits a failed script ran into, if it shows: a fork refused by its
    cgroup, or what its errors say of an allocation refused under RLIMIT_AS or a fork under
    RLIMIT_NPROC (Python, NumPy and C++ each say it their way)."""
    if result.limit_reached:
        return result.limit_reached
    errors = read_tail(run_dir / STDERR_NAME, 65536)
    if result.memory_mb and MEMORY_ERRORS.search(errors):
        return f"memory limit of {result.memory_mb} MB reached"
    if result.tasks and TASK_ERRORS.search(errors):
        return f"task limit of {result.tasks} reached"
    return None


def judge(result: ChildResult, run_dir: Path, timeout_s: float,
          metric: str = "accuracy") -> Outcome:
    """Turn how the child ended, and what it printed, into the run's outcome."""
    ended = functools.partial(Outcome, exit_code=result.exit_code,
                              duration_s=round(result.duration_s, 3))
    if result.stopped:
        return ended(RunStatus.CANCELLED, stopped=True)
    if result.timed_out:
        return ended(RunStatus.FAILED, error=f"timed out after {timeout_s:g} s")
    if result.signal_name or result.exit_code != 0:
        how = (f"killed by {result.signal_name}" if result.signal_name else
               f"exited with code {result.exit_code}")
        limit = limit_reached(result, run_dir)
        error = f"{limit + ': ' if limit else ''}{how}\n{_last_lines(run_dir)}".strip()
        return ended(RunStatus.FAILED, error=error)
    printed = read_tail(run_dir / STDOUT_NAME)
    value = find_metric(printed, metric)
    if value is None:
        return ended(RunStatus.FAILED, error=f"no {metric} found in the output")
    return ended(RunStatus.SUCCEEDED, accuracy=find_metric(printed, "accuracy"), value=value)


def preflight(script: Path, images: Path) -> str | None:
    """A reason the run cannot start at all, or None."""
    if not script.is_file():
        return f"train script not found: {script}"
    if not images.is_dir():
        return f"training images snapshot missing: {images}"
    return None


@dataclass(frozen=True)
class TrainingJob:
    """One attempt's inputs: which run, its parameters, where its images and folder are."""

    run_id: int
    params: dict[str, Any]  # by name, in the order the script gets them
    images: Path
    run_dir: Path
    timeout_s: float
    extra_env: dict[str, str] = field(default_factory=dict)
    metric: str = "accuracy"
    seed: int = 0
    poll_s: float = 1.0  # how often the supervisor asks `keep_going`
    code: dict[str, Any] | None = None  # its code version (RunSpec.code); None: the deployment's
    tree: Path | None = None  # where that version's tree lies on this host


T = TypeVar("T")


def while_leased(work: Callable[[], T], keep_going: Callable[[int | None], bool],
                 poll_s: float) -> T | None:
    """`work()` in a thread while the lease is renewed (building an environment may take
    minutes); None when the run should stop meanwhile (the build goes on for whoever needs the
    environment next). Its exception is raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as error:  # handed over to the waiting thread
            failure.append(error)
        finally:
            done.set()

    # A daemon: a worker that stops does not wait for pip (whose own time limit ends it).
    threading.Thread(target=target, name="environment", daemon=True).start()
    while not done.wait(poll_s):
        if not keep_going(None):
            return None
    if failure:
        raise failure[0]
    return outcome[0]


def train_entry(settings: Settings, job: TrainingJob,
                keep_going: Callable[[int | None], bool]) -> Entry | Outcome:
    """The script to run and its interpreter; or the outcome of a run that cannot start
    (its environment could not be built: failed at once, with pip's reason)."""
    if job.code is None or job.tree is None:
        return deployment_train(settings)
    code, tree = job.code, job.tree
    if not (tree / code["train"]).is_file():
        return Outcome(RunStatus.FAILED, error=f"train script not found: {code['train']} in "
                                               f"code version {code['version']}")
    try:
        entry = while_leased(lambda: code_entry(settings, tree, code, "train"), keep_going,
                             job.poll_s)
    except EnvironmentFailed as failed:
        return Outcome(RunStatus.FAILED, error=failed.reason)
    return Outcome(RunStatus.CANCELLED, stopped=True) if entry is None else entry


def run_training(settings: Settings, job: TrainingJob,
                 keep_going: Callable[[int | None], bool]) -> Outcome:
    """Run the training script for `job`; `keep_going(pgid)` renews the lease each poll."""
    entry = train_entry(settings, job, keep_going)
    if isinstance(entry, Outcome):
        return entry
    problem = preflight(entry.script, job.images)
    if problem:
        return Outcome(RunStatus.FAILED, error=problem)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    # What reuse matches on: a code version names its whole tree (and its requirements)
    script = job.code["version"] if job.code else script_sha256(settings.train_script)
    (job.run_dir / PARAMS_NAME).write_text(json.dumps(job.params))
    env = {**script_env(job.run_id), **job.extra_env, **params_env(job.params),
           **entry.env(), "SWEEPLAB_SEED": str(job.seed)}
    try:
        child = start_child(train_argv(entry, job.params, job.images),
                            training_view(settings, entry, job.images, job.run_dir, env),
                            job.run_dir, env, job.run_dir / STDOUT_NAME,
                            job.run_dir / STDERR_NAME)
    except OSError as error:
        return Outcome(RunStatus.FAILED, error=f"could not start the train script: {error}")
    keep_going(child.pid)
    result = supervise(child, job.timeout_s, should_stop=lambda: not keep_going(None),
                       poll_s=job.poll_s)
    return replace(judge(result, job.run_dir, job.timeout_s, job.metric), script_sha256=script)
