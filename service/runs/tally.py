"""A succeeded run counted into its configuration's running statistics, in the transaction
that records its success (the one place a run becomes succeeded: runs.state.transition).

Welford's update: n, mean and M2 (the sum of squared differences from the mean) change by
one value, whatever the number of runs before; the variance is M2 / (n - 1). A run is counted
once because it becomes succeeded once (a terminal state, guarded by status and attempt).
"""

from __future__ import annotations

from typing import Any

from service.core.db import is_sqlite
from service.core.tables import ConfigStat, Experiment


def welford(n: int, mean: float, m2: float, value: float) -> tuple[int, float, float]:
    """(n, mean, M2) with one more value."""
    n += 1
    delta = value - mean
    mean += delta / n
    return n, mean, m2 + delta * (value - mean)


def counted(stat: dict[str, Any], run_id: int, value: float, maximize: bool) -> dict[str, Any]:
    """The configuration's statistics (as ConfigStat's columns) with one more run."""
    n, mean, m2 = welford(stat["n"], stat["mean"], stat["m2"], value)
    best_value, best_run = stat["best_value"], stat["best_run_id"]
    sign = 1 if maximize else -1
    if best_run is None or (sign * value, -run_id) > (sign * best_value, -best_run):
        best_value, best_run = value, run_id
    return {"n": n, "mean": mean, "m2": m2,
            "low": value if stat["low"] is None else min(stat["low"], value),
            "high": value if stat["high"] is None else max(stat["high"], value),
            "first_run_id": min(run_id, stat["first_run_id"] or run_id),
            "best_run_id": best_run, "best_value": best_value,
            "run_ids": sorted([*stat["run_ids"], run_id])}


def empty(params: dict[str, Any]) -> dict[str, Any]:
    return {"params": params, "n": 0, "mean": 0.0, "m2": 0.0, "low": None, "high": None,
            "first_run_id": None, "best_run_id": None, "best_value": None, "run_ids": []}


def count_success(experiment_id: int, run_id: int, params: dict[str, Any], config: str,
                  value: float) -> None:
    """Add the run's value to its configuration's row, inside the caller's transaction. The
    row is made first if missing (ignored if another result made it), then read locked."""
    direction = (Experiment.select(Experiment.objective_direction)
                 .where(Experiment.id == experiment_id).scalar())
    ConfigStat.insert(experiment=experiment_id, config=config, **empty(params)).on_conflict_ignore(
    ).execute()
    query = ConfigStat.select().where(ConfigStat.experiment == experiment_id,
                                      ConfigStat.config == config)
    if not is_sqlite():  # SQLite's IMMEDIATE transaction already locks
        query = query.for_update()
    stat = query.get()
    changes = counted(stat.__data__, run_id, value, direction == "maximize")
    ConfigStat.update(**changes).where(ConfigStat.id == stat.id).execute()
