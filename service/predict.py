"""Predictions: the test script, run by the API with the model's best parameters.

It runs in the best run's working directory (where a script finds the model it saved), as a
child in its own process group with a time limit, like a training run.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from service.errors import Conflict
from service.models import Run
from service.parsing import last_line_dict
from service.settings import Settings
from service.supervise import kill_group, with_parent_death_signal
from service.training import read_tail, script_env
from service.views import params_json

OUTPUT_LIMIT = 64 * 1024


def test_argv(settings: Settings, run: Run, image: Path) -> list[str]:
    return [settings.python, str(settings.test_script), "--i", repr(float(run.param_i)),
            "--j", str(run.param_j), "--k", str(run.param_k), "--image", str(image)]


async def _run_child(argv: list[str], cwd: Path, out: Path, err: Path,
                     timeout_s: float) -> tuple[int | None, bool]:
    command, preexec = with_parent_death_signal(argv)
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        child = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=preexec, env=script_env(0),
        )
    try:
        code = await asyncio.wait_for(child.wait(), timeout_s)
        return code, False
    except TimeoutError:
        return None, True
    finally:
        kill_group(child.pid)  # whatever it left behind, or all of it on a timeout
        if child.returncode is None:
            await child.wait()


async def run_prediction(settings: Settings, run: Run, image: Path) -> dict[str, Any]:
    """Run the test script on `image`; raise 409 when it cannot run or fails."""
    run_dir = settings.runs_dir / str(run.id)
    if not settings.test_script.is_file():
        raise Conflict(f"test script not found: {settings.test_script}")
    if not run_dir.is_dir():
        raise Conflict(f"the best run's folder is missing: runs/{run.id}")
    out, err = image.parent / "stdout.log", image.parent / "stderr.log"
    started = time.monotonic()
    code, timed_out = await _run_child(test_argv(settings, run, image), run_dir, out, err,
                                       settings.predict_timeout_s)
    stdout = read_tail(out, OUTPUT_LIMIT)
    if timed_out:
        raise Conflict(f"the test script timed out after {settings.predict_timeout_s:g} s")
    if code != 0:
        tail = "\n".join(read_tail(err, 4096).strip().splitlines()[-5:])
        raise Conflict(f"the test script exited with code {code}: {tail}")
    return {"run_id": run.id, "params": params_json(run),
            "output": last_line_dict(stdout), "stdout": stdout,
            "duration_s": round(time.monotonic() - started, 3)}
