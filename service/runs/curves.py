"""Learning curves: the lines a script prints while it trains that carry the objective's metric
and a step (`step`, `epoch` or `iteration`) — `{'step': 200, 'accuracy': 0.61}`, JSON, or
`step=200 accuracy=0.61`. They are stored as they arrive (a local worker reads its run's output;
for a remote one the API reads what the heartbeats bring), and once more from the whole output
when the run ends; a point is kept once per step, so reading a line twice costs nothing.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from peewee import Query

from service.core.db import insert_in_batches, write_transaction
from service.core.queries import tuple_rows
from service.core.tables import Run, RunPoint
from service.execution.parsing import metric_in_line, parse_dict_line

STEP_KEYS = ("step", "epoch", "iteration")
_STEP = re.compile(r"(?<![\w.])(step|epoch|iteration)\b\s*[:=]\s*(\d+)\b", re.IGNORECASE)
READ_LIMIT = 1 << 20


def _step_of(line: str) -> int | None:
    found = parse_dict_line(line)
    if found is not None:
        for key, value in found.items():
            if isinstance(key, str) and key.strip().lower() in STEP_KEYS:
                return _whole(value)
        return None
    match = _STEP.search(line)
    return int(match.group(2)) if match else None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def points_in(text: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of each line carrying both; a step printed twice keeps its last value."""
    points: dict[int, float] = {}
    for line in text.splitlines():
        step = _step_of(line)
        if step is None:
            continue
        value = metric_in_line(line, metric)
        if value is not None:
            points[step] = value
    return sorted(points.items())


def record_points(run_id: int, points: list[tuple[int, float]]) -> None:
    if not points:
        return
    rows = [{"run": run_id, "step": step, "value": value} for step, value in points]
    with write_transaction():
        insert_in_batches(RunPoint, rows, ignore_conflicts=True)


class CurveFollower:
    """Reads the complete lines a run's output gained since the last look."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}
        self.lock = threading.Lock()

    def follow(self, run_id: int, stdout: Path, metric: str) -> int:
        """Store the points of the new lines; how many there were."""
        with self.lock:
            offset = self.offsets.get(run_id, 0)
        try:
            with open(stdout, "rb") as handle:
                handle.seek(offset)
                data = handle.read(READ_LIMIT)
        except FileNotFoundError:
            return 0
        complete = data[:data.rfind(b"\n") + 1]
        if not complete:
            return 0
        points = points_in(complete.decode("utf-8", "replace"), metric)
        record_points(run_id, points)
        with self.lock:
            self.offsets[run_id] = offset + len(complete)
        return len(points)

    def finish(self, run_id: int, stdout: Path, metric: str) -> None:
        """Every point of the whole output (the last lines may not have been followed)."""
        with self.lock:
            self.offsets.pop(run_id, None)
        points: dict[int, float] = {}
        try:
            with open(stdout, encoding="utf-8", errors="replace") as lines:
                for line in lines:  # line by line: an output may be far larger than memory
                    points.update(points_in(line, metric))
        except FileNotFoundError:
            return
        record_points(run_id, sorted(points.items()))


def curve_json(run_id: int) -> list[dict[str, Any]]:
    rows = tuple_rows(RunPoint.select(RunPoint.step, RunPoint.value)
                      .where(RunPoint.run == run_id).order_by(RunPoint.step))
    return [{"step": step, "value": value} for step, value in rows]


def experiment_curves(experiment_id: int) -> dict[int, dict[int, float]]:
    """Every run's curve of the experiment, by run id: {step: value}, in one query."""
    return _by_run(RunPoint.select(RunPoint.run, RunPoint.step, RunPoint.value).join(Run)
                   .where(Run.experiment == experiment_id))


def curves_of(run_ids: list[int]) -> dict[int, dict[int, float]]:
    """These runs' curves, by run id: {step: value} (a big experiment's page draws a few)."""
    if not run_ids:
        return {}
    return _by_run(RunPoint.select(RunPoint.run, RunPoint.step, RunPoint.value)
                   .where(RunPoint.run.in_(run_ids)))


def _by_run(points: Query) -> dict[int, dict[int, float]]:
    curves: dict[int, dict[int, float]] = {}
    for run_id, step, value in tuple_rows(points.order_by(RunPoint.run, RunPoint.step)):
        curves.setdefault(run_id, {})[step] = value
    return curves
