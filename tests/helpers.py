"""Small builders the tests share: real PNG bytes, archives with chosen members, rows as a
finished sweep leaves them; the fake scripts; waiting for a condition against a deadline; and
the client's `sweeplab` command run as a user runs it (piped, or in a pseudo-terminal)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import tarfile
import termios
import time
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

TESTS = Path(__file__).resolve().parent
FAKE_TRAIN = TESTS / "scripts" / "fake_train.py"
FAKE_PREDICT = TESTS / "scripts" / "fake_predict.py"


def run_params(i: float = 0.1, j: int = 1, k: int = 1) -> dict:
    """A run row's parameters (the assignment's i, j, k) and their identity, for Run.create."""
    from service.sweeps.grid import config_key

    params = {"i": i, "j": j, "k": k}
    return {"params": params, "config": config_key(params)}


def png_bytes(shade: int = 0, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), color=shade).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz_bytes(members: dict[str, bytes], links: dict[str, str] | None = None,
                 mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             every_s: float = 0.1) -> None:
    """Poll `condition` until it is true; fail naming `what` once `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every_s)


def trash_emptied(data_dir: Path) -> bool:
    """Whether deletions' folders are all removed: the background removal takes the trash
    folders of runs/ and snapshots/ last, after collecting the images they held."""
    return not any((data_dir / top / ".trash").exists() for top in ("runs", "snapshots"))


def make_run(db) -> int:
    """A queued run of a running experiment of a new model (in the open test database)."""
    from service.core.tables import Experiment, MLModel, Run
    from service.sweeps.grid import DEFAULT_GRID

    model = MLModel.create(name="m")
    experiment = Experiment.create(model=model, grid=DEFAULT_GRID, timeout_s=10,
                                   status="running")
    return Run.create(experiment=experiment, **run_params(0.1, 1, 1)).id


def settle(experiment_id: int, outcomes: dict[int, dict], best: int | None,
           curves: dict[int, dict[int, float]]) -> list[int]:
    """Give the experiment's runs (in id order) these outcomes and curves, as a finished sweep
    would have; the run ids."""
    from service.core.tables import Experiment, Run, RunPoint

    ids = [r.id for r in Run.select(Run.id).where(Run.experiment == experiment_id)
           .order_by(Run.id)]
    start = datetime(2025, 1, 1)
    for n, run_id in enumerate(ids):
        fields = {"status": "succeeded", "started_at": start,
                  "finished_at": start + timedelta(minutes=n + 1), "duration_s": 60.0,
                  **outcomes.get(n, {})}
        Run.update(**fields).where(Run.id == run_id).execute()
        RunPoint.insert_many([{"run": run_id, "step": s, "value": v}
                              for s, v in curves.get(n, {}).items()]).execute()
    Experiment.update(status="completed", best_run_id=ids[best] if best is not None else None
                      ).where(Experiment.id == experiment_id).execute()
    return ids


def make_wheel(wheelhouse: Path, name: str, version: str, source: str) -> Path:
    """A pure-Python wheel of one module `name` holding `source`, written by hand (a wheel
    is a zip with its metadata): `pip wheel` would need setuptools' build backend, which an
    offline host may lack. pip installs it from `wheelhouse` with PIP_FIND_LINKS."""
    import base64
    import hashlib

    wheelhouse.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    members = {
        f"{name}.py": source.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: sweeplab-tests\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = wheelhouse / f"{name}-{version}-py3-none-any.whl"
    wheel.write_bytes(zip_bytes(members))
    return wheel


def add_code_version(data_dir: Path, model_id: int, files: dict[str, bytes],
                     test: str | None = "test.py",
                     requirements: str | None = None) -> str:
    """A code version of `files` for a model, as an upload leaves it: its tree in the data
    directory's code store and its row (the upload route is not needed to run code). Its
    version, as service.execution.codetree names it."""
    import hashlib
    import json
    import sqlite3

    from service.execution.codetree import tree_version
    from service.storage import code_in

    entries = sorted(({"path": path, "size": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()}
                      for path, data in files.items()), key=lambda entry: entry["path"])
    version = tree_version(entries)  # type: ignore[arg-type]  # TreeFile's keys, as dicts
    tree = code_in(data_dir / "code", version)
    for path, data in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    now = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(data_dir / "sweeplab.db") as connection:
        connection.execute(
            "INSERT INTO code_version (model_id, version, files, train, test, requirements, "
            "created_at, uploaded_at) VALUES (?, ?, ?, 'train.py', ?, ?, ?, ?)",
            (model_id, version, json.dumps(entries), test, requirements, now, now))
    return version


def pin_code_version(data_dir: Path, experiment_id: int, version: str) -> None:
    """What creating an experiment does once the model has code: pin its current version."""
    import sqlite3

    with sqlite3.connect(data_dir / "sweeplab.db") as connection:
        connection.execute("UPDATE experiment SET code_version = ? WHERE id = ?",
                           (version, experiment_id))


# --- the client's `sweeplab` command, as a user runs it --------------------------------------

SWEEPLAB = Path(sys.executable).parent / "sweeplab"  # installed by scripts/setup.sh


def sweeplab_env(home: Path, **env: str) -> dict[str, str]:
    """The environment of a user whose home is `home`, without our SWEEPLAB_ settings."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("SWEEPLAB_", "XDG_CONFIG"))}
    return {**clean, "HOME": str(home), **env}


def sweeplab(*args: str, home: Path, stdin: str | None = None, timeout: float = 120,
             **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real `sweeplab` command, piped (no terminal)."""
    assert SWEEPLAB.exists(), f"{SWEEPLAB} is missing: scripts/setup.sh installs the client"
    return subprocess.run([str(SWEEPLAB), *args], input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=timeout,
                          env=sweeplab_env(home, **env))


def sweeplab_in_terminal(*args: str, home: Path, timeout: float = 120,
                         **env: str) -> tuple[int, str]:
    """Run `sweeplab` in a pseudo-terminal of 120 columns: its exit code and all it drew."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([str(SWEEPLAB), *args], stdin=child, stdout=child,
                               stderr=child, env=sweeplab_env(home, TERM="xterm-256color",
                                                              **env))
    os.close(child)
    output = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child side closed
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    else:
        process.kill()
    os.close(main)
    return process.wait(timeout=10), output.decode(errors="replace")


BIG_STATUSES = ("succeeded",) * 16 + ("failed", "running", "queued", "pruned")


def finish_at_random(experiment_id: int, seed: int = 7,
                     steps: int = 5) -> dict[int, tuple[str, float | None]]:
    """Give every run of the (open database's) experiment a status drawn at random, mostly
    succeeded, a value for those that succeeded (rounded: with ties) and a curve of `steps`
    points, in one transaction, as a large sweep under way leaves it; then its statistics
    and best by the repair path, and the experiment running. Each run's (status, value)."""
    import random

    from service.core.db import insert_in_batches, write_transaction
    from service.core.tables import Experiment, Run, RunPoint
    from service.sweeps.aggregate import recompute_statistics

    draw = random.Random(seed)
    start = datetime(2025, 1, 1)
    outcomes: dict[int, tuple[str, float | None]] = {}
    points = []
    with write_transaction():
        for n, (run_id,) in enumerate(Run.select(Run.id).where(Run.experiment == experiment_id)
                                      .order_by(Run.id).tuples()):
            status = draw.choice(BIG_STATUSES)
            value = round(draw.random(), 3) if status == "succeeded" else None
            ended = status in ("succeeded", "failed", "pruned")
            Run.update(status=status, value=value, accuracy=value, attempts=int(ended),
                       finished_at=start + timedelta(seconds=n) if ended else None,
                       duration_s=1.0 + n % 7 if ended else None).where(
                Run.id == run_id).execute()
            outcomes[run_id] = (status, value)
            if value is not None:
                points += [{"run": run_id, "step": step, "value": value * step / steps}
                           for step in range(1, steps + 1)]
        insert_in_batches(RunPoint, points)
        Experiment.update(status="running").where(Experiment.id == experiment_id).execute()
        recompute_statistics(experiment_id)
    return outcomes
