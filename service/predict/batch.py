"""Predictions: the test script, run by the API with the model's best parameters.

It runs in the best run's working directory (where a script finds the model it saved). Cold,
one child per image, in its own process group with a time limit, like a training run, a few at
a time. Warm, when the script opts in (service/predict/warm.py): one long-lived process per model,
fed one image path per line; one that dies mid-batch is replaced for the rest of the batch.
Either way an image's answer is the same object.

A request is all or nothing: the first image the script fails on (or times out on) answers the
whole request 409, naming that image; the other children are stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.errors import Conflict
from service.core.tables import Run
from service.execution.command import Entry, last_lines, test_argv
from service.execution.parsing import last_line_dict
from service.execution.sandbox import ScriptView, launch_command
from service.execution.supervise import kill_group
from service.execution.training import read_tail
from service.execution.views import cold_predict_view
from service.predict.entry import prediction_entry
from service.predict.warm import Held, WarmBroken, WarmPool, WarmTimeout, script_env_for
from service.settings import Settings

OUTPUT_LIMIT = 64 * 1024
log = logging.getLogger("sweeplab.predict")


@dataclass(frozen=True)
class PredictImage:
    path: Path  # a checked image in the request's temp folder
    name: str  # the part's filename: its answer's `name`, and how an error names it


def image_at(index: int, count: int, name: str) -> str:
    """How a message names one image of a request: by the same index from 0 that the JSON's
    `index` fields give (and the answers' positions), with the file name that was sent."""
    return f"image at index {index} of {count} ({name!r})"


class _ImageFailed(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def cold_parallelism() -> int:
    """Cold children at once per request: one per CPU this process may use."""
    return max(1, len(os.sched_getaffinity(0)))


def _answer(run: Run, image: PredictImage, output: dict[str, Any], stdout: str,
            duration_s: float) -> dict[str, Any]:
    if output.get("image") in (str(image.path), image.path.name):
        # the script echoed the path it was given: a temporary file, gone once we answer
        output = {**output, "image": image.name}
    return {"run_id": run.id, "params": run.params, "name": image.name, "output": output,
            "stdout": stdout, "duration_s": duration_s}


async def _run_child(argv: list[str], view: ScriptView, env: dict[str, str], cwd: Path,
                     out: Path, err: Path, timeout_s: float) -> tuple[int | None, bool, str | None]:
    """(exit code, timed out, the limit it reached if any)."""
    launch = launch_command(argv, view)
    try:
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            child = await asyncio.create_subprocess_exec(
                *launch.command, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=stdout,
                stderr=stderr, start_new_session=True, preexec_fn=launch.preexec,
                env=env,
            )
    except BaseException:
        await asyncio.to_thread(launch.ended)
        raise
    try:
        code = await asyncio.wait_for(child.wait(), timeout_s)
        return code, False, await asyncio.to_thread(launch.ended)
    except TimeoutError:
        return None, True, None
    finally:
        kill_group(child.pid)  # whatever it left behind, all of it on a timeout or a cancel
        if child.returncode is None:
            await child.wait()
        await asyncio.to_thread(launch.ended)  # and all of its sandbox's


async def _predict_cold(settings: Settings, run: Run, entry: Entry,
                        image: PredictImage) -> dict[str, Any]:
    """One child for one image; raise _ImageFailed(-1, why) when it fails."""
    out = image.path.parent / f"{image.path.stem}.stdout.log"
    err = image.path.parent / f"{image.path.stem}.stderr.log"
    started = time.monotonic()
    run_dir = settings.runs_dir / str(run.id)
    code, timed_out, limit = await _run_child(
        test_argv(entry, run.params, image.path),
        cold_predict_view(settings, entry, run_dir, image.path), script_env_for(run, entry),
        run_dir, out, err, settings.predict_timeout_s)
    stdout = read_tail(out, OUTPUT_LIMIT)
    if timed_out:
        raise _ImageFailed(-1, f"the test script timed out after "
                               f"{settings.predict_timeout_s:g} s")
    if code != 0:
        tail = last_lines(read_tail(err, 4096))
        why = f"{limit} and " if limit else ""
        raise _ImageFailed(-1, f"the test script {why}exited with code {code}: {tail}")
    return _answer(run, image, last_line_dict(stdout), stdout,
                   round(time.monotonic() - started, 3))


async def _all_cold(settings: Settings, run: Run, entry: Entry,
                    images: Sequence[PredictImage], first: int = 0) -> list[dict[str, Any]]:
    """The images' answers, a few children at once; `first`: the index of images[0]."""
    slots = asyncio.Semaphore(cold_parallelism())

    async def one(index: int, image: PredictImage) -> dict[str, Any]:
        async with slots:
            try:
                return await _predict_cold(settings, run, entry, image)
            except _ImageFailed as failed:
                raise _ImageFailed(index, failed.message) from None

    try:
        # A TaskGroup cancels the others at the first failure: their children are killed.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(n, image))
                     for n, image in enumerate(images, start=first)]
    except ExceptionGroup as failures:
        matched, rest = failures.split(_ImageFailed)
        if rest is not None or matched is None:
            raise
        raise min(matched.exceptions, key=_index) from None
    return [task.result() for task in tasks]


def _index(error: BaseException) -> int:
    return error.index if isinstance(error, _ImageFailed) else -1


async def _all_warm(settings: Settings, pool: WarmPool, model_id: int, run: Run, entry: Entry,
                    images: Sequence[PredictImage]) -> list[dict[str, Any]]:
    """The first images' answers from the model's warm process, in order: all of them unless
    no process could be had (the script does not opt in, none starts, or two died on one image);
    the rest go cold."""
    answers: list[dict[str, Any]] = []
    async with pool.process_for(model_id, run, entry) as held:
        for index, image in enumerate(images):
            answer = await _one_warm(settings, held, run, index, image)
            if answer is None:
                break
            answers.append(answer)
    return answers


async def _one_warm(settings: Settings, held: Held, run: Run, index: int,
                    image: PredictImage) -> dict[str, Any] | None:
    """One image's answer from the held process; None: answer it and the rest cold. A process
    that dies (or breaks the protocol) on the image is replaced and the image sent once more, to
    the new one. When that one dies on it too, warm is given up for the request: a script that
    dies on every image would otherwise cost two starts an image, one after the other."""
    for attempt in range(2):
        process = await held.live()
        if process is None:
            return None
        try:
            reply = await process.ask(image.path, settings.predict_timeout_s)
        except WarmTimeout as error:
            raise _ImageFailed(index, str(error)) from None
        except WarmBroken as error:
            log.warning("the warm test script of run %s (pid %s) failed on image at index %s "
                        "(%s); %s", run.id, process.pid, index, error,
                        "a new one takes over" if attempt == 0 else "predicting the rest cold")
            continue
        if isinstance(reply.output.get("error"), str):
            raise _ImageFailed(index, f"the test script failed: {reply.output['error']}")
        return _answer(run, image, reply.output, reply.stdout, reply.duration_s)
    return None


def _check_scripts(settings: Settings, run: Run, entry: Entry) -> None:
    if not entry.script.is_file():
        raise Conflict(f"test script not found: {entry.script}")
    if not (settings.runs_dir / str(run.id)).is_dir():
        raise Conflict(f"the best run's folder is missing: runs/{run.id}")


async def predict_images(settings: Settings, pool: WarmPool, model_id: int, run: Run,
                         images: Sequence[PredictImage]) -> list[dict[str, Any]]:
    """Each image's answer, in order; 409 when the script cannot run or fails on one."""
    # A thread: a query, and maybe the code version's environment to build (minutes, once)
    entry = await asyncio.get_running_loop().run_in_executor(None, prediction_entry, settings,
                                                             run)
    _check_scripts(settings, run, entry)
    try:
        warm = await _all_warm(settings, pool, model_id, run, entry, images)
        rest = images[len(warm):]
        return warm + (await _all_cold(settings, run, entry, rest, len(warm)) if rest else [])
    except _ImageFailed as failed:
        if len(images) == 1:  # a single image answers exactly as it always has
            raise Conflict(failed.message) from None
        image = images[failed.index]
        raise Conflict(f"{image_at(failed.index, len(images), image.name)}: {failed.message}",
                       field="image",
                       extra={"failed": {"index": failed.index, "name": image.name}}) from None
