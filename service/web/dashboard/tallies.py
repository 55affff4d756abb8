"""What the page of a large experiment reads instead of its runs (issue 24): each grid point's
runs counted by state in one GROUP BY, its configuration's statistics as kept in config_stat
(one row per configuration, updated with each result), the (id, value) of the runs that
succeeded (two numbers a run, to choose which to draw) and whole rows only for the few runs a
chart or the runs table shows. Blocking: called in the DB threads."""

from __future__ import annotations

import json
from typing import Any

from peewee import fn

from service.core.db import database
from service.core.queries import tuple_rows
from service.core.tables import ConfigStat, Experiment
from service.sweeps.statistics import MAXIMIZE, Configuration, configuration_json
from service.web.dashboard.heatmap import PointRuns
from service.web.views import RUN_FIELDS, run_view

TOP_CURVES = 5  # the best runs of the best configurations, drawn with the best run
CURVE_SAMPLE = 20  # and so many of the others, evenly spread over the run ids


def _counts(experiment_id: int) -> dict[str, dict[str, list[Any]]]:
    """config -> status -> [runs, first run id, reused runs, mean accuracy]."""
    p = database.param
    rows = database.execute_sql(
        "SELECT config, status, COUNT(*), MIN(id), "
        "SUM(CASE WHEN reused_from IS NULL THEN 0 ELSE 1 END), AVG(accuracy) "
        f"FROM run WHERE experiment_id = {p} GROUP BY config, status", (experiment_id,))
    counts: dict[str, dict[str, list[Any]]] = {}
    for config, status, number, first, reused, accuracy in rows.fetchall():
        counts.setdefault(config, {})[status] = [number, first, int(reused or 0), accuracy]
    return counts


def _params_of(run_ids: list[int]) -> dict[str, dict[str, Any]]:
    """config -> parameters, read from one run of each (for the points none succeeded in)."""
    found: dict[str, dict[str, Any]] = {}
    p = database.param
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        rows = database.execute_sql(
            f"SELECT config, params FROM run WHERE id IN ({', '.join([p] * len(chunk))})",
            tuple(chunk)).fetchall()
        found.update({config: _json(params) for config, params in rows})
    return found


def _json(value: Any) -> Any:
    """A JSON column's value: text on SQLite, already parsed by psycopg2 on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def _best_config(best_run_id: int | None) -> str | None:
    if best_run_id is None:
        return None
    row = database.execute_sql(f"SELECT config FROM run WHERE id = {database.param}",
                               (best_run_id,)).fetchone()
    return row[0] if row else None


def grid_points(experiment: Experiment) -> list[PointRuns]:
    """Every grid point that has runs, by aggregate queries: its runs counted by state and its
    configuration's kept statistics (its mean over its succeeded runs, as the views say). A
    configuration's statistics exist once it has a success: the transaction that counts its
    first one makes the row (runs.tally)."""
    counts = _counts(experiment.id)
    # a raw query: peewee's per-field conversion of 10,000 rows cost as much as the rest
    p = database.param
    rows = database.execute_sql(
        "SELECT config, params, n, mean, m2, low, high, best_run_id, best_value "
        f"FROM config_stat WHERE experiment_id = {p}", (experiment.id,)).fetchall()
    stats = {row[0]: (_json(row[1]), *row[2:]) for row in rows}
    unscored = [min(held[1] for held in by_status.values())
                for config, by_status in counts.items() if config not in stats]
    params = _params_of(unscored)
    best = _best_config(experiment.best_run_id)
    points = []
    for config, by_status in counts.items():
        stat = stats.get(config)
        first = min(held[1] for held in by_status.values())
        succeeded = by_status.get("succeeded")
        points.append(PointRuns(
            stat[0] if stat else params[config],
            {status: held[0] for status, held in by_status.items()},
            int(stat[6]) if stat and stat[6] is not None else first, config == best,
            succeeded[3] if succeeded else None,
            sum(held[2] for held in by_status.values()),
            configuration_json(Configuration(stat[0], stored=stat[1:6])) if stat else None,
            stat[7] if stat else None))
    return points


def top_best_runs(experiment: Experiment, limit: int = TOP_CURVES) -> list[int]:
    """The best run of each of the `limit` best configurations (by mean), best first."""
    order = (ConfigStat.mean.desc() if experiment.objective_direction == MAXIMIZE
             else ConfigStat.mean.asc())
    return [run_id for (run_id,) in tuple_rows(ConfigStat.select(ConfigStat.best_run_id).where(
        ConfigStat.experiment == experiment.id).order_by(
        order, ConfigStat.first_run_id).limit(limit))]


def mean_range(experiment_id: int) -> list[float]:
    """The lowest and the highest configuration mean (none before a run succeeded): the
    colour scale's ends for a metric other than the accuracy."""
    low, high = next(iter(tuple_rows(
        ConfigStat.select(fn.MIN(ConfigStat.mean), fn.MAX(ConfigStat.mean))
        .where(ConfigStat.experiment == experiment_id))))
    return [] if low is None else [low, high]


def scored(experiment_id: int) -> list[tuple[float, dict[str, Any]]]:
    """(value, {"id"}) of every run that succeeded with a value: what choosing the runs to
    draw needs, two numbers a run."""
    p = database.param
    rows = database.execute_sql(
        f"SELECT id, value FROM run WHERE experiment_id = {p} AND status = {p} "
        f"AND value IS NOT NULL", (experiment_id, "succeeded")).fetchall()
    return [(value, {"id": run_id}) for run_id, value in rows]


def runs_by_id(run_ids: list[int]) -> list[dict[str, Any]]:
    """These runs' views, in id order."""
    if not run_ids:
        return []
    p = database.param
    rows = database.execute_sql(
        f"SELECT {', '.join(RUN_FIELDS)} FROM run WHERE id IN ({', '.join([p] * len(run_ids))})"
        f" ORDER BY id", tuple(run_ids)).fetchall()
    return [run_view(row) for row in rows]


def mean_duration(experiment_id: int) -> float | None:
    p = database.param
    return database.execute_sql(
        f"SELECT AVG(duration_s) FROM run WHERE experiment_id = {p} AND duration_s > 0",
        (experiment_id,)).fetchone()[0]


def curve_runs(best_id: int | None, top: list[int],
               succeeded: list[tuple[float, dict[str, Any]]]) -> list[int]:
    """The runs whose curves a large experiment's page draws: the best, the best run of each
    of the TOP_CURVES best configurations, and CURVE_SAMPLE of the others evenly spread."""
    chosen = [best_id] if best_id is not None else []
    chosen += top
    ids = sorted(run["id"] for _, run in succeeded)
    every = max(1, len(ids) // CURVE_SAMPLE)
    chosen += ids[::every][:CURVE_SAMPLE]
    return list(dict.fromkeys(chosen))
