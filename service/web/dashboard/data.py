"""What each page shows, gathered from the database (blocking: called in the DB threads)."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

from service.contract import RunStatus
from service.core.lookup import get_experiment, get_model, get_run
from service.core.queries import tuple_rows
from service.core.tables import Experiment, Image, ModelImage
from service.execution.training import STDERR_NAME, STDOUT_NAME, read_tail
from service.runs.curves import curve_json, curves_of, experiment_curves
from service.settings import Settings
from service.storage import image_path
from service.sweeps.statistics import MAXIMIZE
from service.web.dashboard import tallies
from service.web.dashboard.charts import legend, overlay_chart, run_curve_chart
from service.web.dashboard.code import SHORT, code_versions
from service.web.dashboard.export import runs_csv
from service.web.dashboard.heatmap import (
    MAX_PANELS,
    PointRuns,
    axis_pairs,
    panels,
    points_from_runs,
)
from service.web.dashboard.marginals import marginal_effects, search_charts
from service.web.dashboard.parallel import caption, kept, parallel_chart
from service.web.dashboard.parameters import names, token, value_lists
from service.web.dashboard.runtable import sortable, table_page
from service.web.dashboard.scale import Scale, scale_of
from service.web.dashboard.sweepform import refill
from service.web.dashboard.tallies import CURVE_SAMPLE, TOP_CURVES
from service.web.views import (
    INLINE_RUNS,
    all_models_json,
    experiment_json,
    model_json,
    run_count,
    run_json,
    runs_of,
)
from service.workers.registry import host_of

THUMBNAILS_PER_LABEL = 4
# The runs table's own columns; a parameter's is "param:NAME" for the experiment's names only.
SORT_KEYS = {"id", "trial", "seed", "status", "value", "accuracy", "duration_s", "attempts"}
PARAM_SORT = "param:"
TOP_CONFIGURATIONS = 5
LOG_LIMIT = 256 * 1024
ENDED_STATES = ("succeeded", "failed", "cancelled", "pruned")  # for the progress bar


def _thumbnails(model_id: int) -> dict[str | None, list[str]]:
    shown: dict[str | None, list[str]] = {}
    rows = tuple_rows(ModelImage.select(ModelImage.label, Image.sha256).join(Image)
                      .where(ModelImage.model == model_id).order_by(ModelImage.id))
    for label, sha in rows:
        chosen = shown.setdefault(label, [])
        if len(chosen) < THUMBNAILS_PER_LABEL:
            chosen.append(sha)
    return shown


def best_view(best: dict[str, Any] | None) -> dict[str, Any] | None:
    """A model's best run as the pages say it: the metric and direction it is best by (the
    view's when it names them, else its experiment's objective) and its value of that metric.
    The model's best follows its newest experiment's objective, so it is not always accuracy."""
    if best is None:
        return None
    if "metric" not in best or "direction" not in best:
        experiment = get_experiment(best["experiment_id"])
        best = {**best, "metric": experiment.objective_metric,
                "direction": experiment.objective_direction}
    return {**best, "shown": best["value"]}


def models_page() -> list[dict[str, Any]]:
    return [{**model, "best": best_view(model["best"])} for model in all_models_json()]


def model_page(model_id: int) -> dict[str, Any]:
    model = model_json(get_model(model_id))
    model["best"] = best_view(model["best"])
    experiments = Experiment.select().where(Experiment.model == model_id).order_by(
        Experiment.id.desc())
    return {"model": model, "thumbnails": _thumbnails(model_id), "sweep": refill(None),
            "code_versions": code_versions(model_id),
            "experiments": [experiment_json(e, with_runs=False) for e in experiments]}


def thumbnail_file(settings: Settings, model_id: int, sha256: str) -> Any:
    row = (ModelImage.select(Image.extension).join(Image)
           .where(ModelImage.model == model_id, Image.sha256 == sha256).tuples().first())
    return image_path(settings, sha256, row[0]) if row else None


def sort_keys(params: list[str]) -> set[str]:
    """What the runs table may be sorted by: its own columns and the experiment's parameters
    (nothing else reaches the lookup, whatever the address says)."""
    return SORT_KEYS | {PARAM_SORT + name for name in params}


def _sort_value(run: dict[str, Any], key: str) -> Any:
    """A run's value for `key`; a parameter's as (kind, value), so that numbers sort as numbers
    and strings as strings even where one parameter mixes them."""
    if not key.startswith(PARAM_SORT):
        return run[key]
    value = run["params"].get(key.removeprefix(PARAM_SORT))
    if value is None:
        return None
    return (0, value, "") if isinstance(value, int | float) and not isinstance(value, bool) \
        else (1, 0, token(value))


def sorted_runs(runs: list[dict[str, Any]], key: str, descending: bool,
                params: list[str] | None = None) -> list[dict[str, Any]]:
    """Runs sorted by `key`; those without a value (no result yet) always come last."""
    key = key if key in sort_keys(params or []) else "id"
    present = [run for run in runs if _sort_value(run, key) is not None]
    missing = [run for run in runs if _sort_value(run, key) is None]
    present.sort(key=lambda run: (_sort_value(run, key), run["id"]), reverse=descending)
    return present + missing


def _seconds_left(experiment: dict[str, Any], mean_duration: float | None) -> float | None:
    """Runs left x the mean duration so far / how many run at once (at least one)."""
    counts = experiment["counts"]
    left = counts[RunStatus.QUEUED] + counts[RunStatus.RUNNING]
    if not mean_duration or not left or experiment["status"] != "running":
        return None
    at_once = max(1, counts[RunStatus.RUNNING])
    return left * mean_duration / at_once


def _progress(experiment: dict[str, Any], mean_duration: float | None = None) -> dict[str, Any]:
    counts = experiment["counts"]
    total = sum(counts.values())
    ended = sum(counts.get(state, 0) for state in ENDED_STATES)
    return {"total": total, "ended": ended,
            "percent": round(100 * ended / total) if total else 0,
            "seconds_left": _seconds_left(experiment, mean_duration)}


def run_columns(experiment: dict[str, Any]) -> list[tuple[str, str]]:
    """The runs table's sortable columns (key, title): the seed with repeats, the objective's
    value when it is not the accuracy."""
    metric = experiment["objective"]["metric"]
    columns = [("id", "Run")]
    columns += [("trial", "Trial")] if searched(experiment) else []
    columns += [(PARAM_SORT + name, name) for name in names(experiment)]
    columns += [("seed", "Seed")] if experiment["repeats"] > 1 else []
    columns += [("status", "Status")]
    columns += [("value", metric)] if metric != "accuracy" else []
    return columns + [("accuracy", "Accuracy"), ("duration_s", "Duration"),
                      ("attempts", "Attempts")]


def searched(experiment: dict[str, Any]) -> bool:
    """A random or TPE search (numbered trials), not a grid."""
    return (experiment.get("search") or {}).get("strategy", "grid") != "grid"


def first_descending(experiment: dict[str, Any]) -> set[str]:
    """The columns whose first click sorts best first: down for a metric to maximise."""
    maximised = experiment["objective"]["direction"] == MAXIMIZE
    return {"accuracy", "value"} if maximised else {"accuracy"}


def experiment_page(experiment_id: int, sort: str, descending: bool, x: str | None,
                    y: str | None, after: str | None = None,
                    status: str | None = None) -> dict[str, Any]:
    """The experiment page's data: of an experiment of up to INLINE_RUNS runs from every run;
    of a larger one from aggregates, samples and a page of the runs (issue 24)."""
    row = get_experiment(experiment_id)
    total = run_count(experiment_id)
    if total <= INLINE_RUNS:
        return _small_page(row, sort, descending, x, y)
    return _large_page(row, total, sort, x, y, after, status)


def _small_page(row: Experiment, sort: str, descending: bool, x: str | None,
                y: str | None) -> dict[str, Any]:
    """Every run read, drawn and listed; the table sortable by any column."""
    experiment = experiment_json(row, runs=runs_of(row.id))
    durations = [r["duration_s"] for r in experiment["runs"] if r["duration_s"]]
    scale = scale_of(experiment)
    params = names(experiment)
    best_id = experiment["best"]["run_id"] if experiment["best"] else None
    context = _context(row, experiment, points_from_runs(experiment), scale, x, y)
    return {**context,
            "progress": _progress(experiment, statistics.fmean(durations) if durations else None),
            "parallel": parallel_chart(experiment),
            **_overlay(experiment, experiment["runs"], experiment_curves(row.id), best_id),
            "search_charts": search_charts(experiment),
            "runs": sorted_runs(experiment["runs"], sort, descending, params),
            "sort": sort if sort in sort_keys(params) else "id",
            "sortable": sort_keys(params), "descending": descending, "pager": None}


def _large_page(row: Experiment, total: int, sort: str, x: str | None, y: str | None,
                after: str | None, status: str | None) -> dict[str, Any]:
    """Aggregates instead of runs: the heatmap and marginals from each grid point's counts and
    kept statistics, the charts from a bounded sample, the table a keyset page."""
    experiment = experiment_json(row)  # the counts by GROUP BY, the best and recent runs
    grid = value_lists(experiment) is not None
    points = tallies.grid_points(row) if grid else []
    scale = scale_of(experiment, tallies.mean_range(row.id))
    succeeded = tallies.scored(row.id)
    sample = tallies.runs_by_id([run["id"] for _, run in
                                 kept(succeeded, row.objective_direction)])
    sampled = {**experiment, "runs": sample}
    best_id = row.best_run_id
    drawn = tallies.curve_runs(best_id, tallies.top_best_runs(row), succeeded)
    page = table_page(row, sort, after, status)
    return {**_context(row, experiment, points, scale, x, y),
            "progress": _progress(experiment, tallies.mean_duration(row.id)),
            "parallel": parallel_chart(sampled, succeeded=len(succeeded)),
            **_overlay(experiment, tallies.runs_by_id(drawn), curves_of(drawn),
                       best_id, len(succeeded)),
            "search_charts": search_charts(sampled, caption(len(succeeded), len(sample))),
            "runs": page["runs"], "sort": page["sort"], "sortable": sortable(row),
            "descending": page["descending"], "pager": page}


def _overlay(experiment: dict[str, Any], runs: list[dict[str, Any]],
             curves: dict[int, dict[int, float]], best_id: int | None,
             succeeded: int | None = None) -> dict[str, Any]:
    """The learning curves of these runs; `succeeded`: a sample of so many runs' curves."""
    overlay = overlay_chart(runs, curves, best_id, experiment["objective"]["metric"])
    note = None
    if succeeded is not None and overlay:
        note = (f"{len(overlay.lines)} of the {succeeded} runs that succeeded: the best run, "
                f"the best run of each of the {TOP_CURVES} best configurations and "
                f"{CURVE_SAMPLE} others evenly spread.")
    return {"overlay": overlay, "overlay_legend": legend(overlay) if overlay else [],
            "overlay_note": note}


def _context(row: Experiment, experiment: dict[str, Any], points: list[PointRuns],
             scale: Scale, x: str | None, y: str | None) -> dict[str, Any]:
    """What both pages show alike, from the grid points' summaries."""
    shown, combinations = panels(experiment, points, scale, x, y)
    return {
        "experiment": experiment,
        "model": model_json(get_model(experiment["model_id"])),
        "scale": scale,
        "params": names(experiment),
        "axis_pairs": axis_pairs(experiment),
        "panels": shown,
        "panel_count": combinations,
        "max_panels": MAX_PANELS,
        # None: the deployment's train.py and test.py
        "code_version": row.code_version,
        "code_short": row.code_version[:SHORT] if row.code_version else None,
        "effects": marginal_effects(experiment, points),
        "top_configurations": experiment["configurations"][:TOP_CONFIGURATIONS],
        "columns": run_columns(experiment),
        "first_descending": first_descending(experiment),
        "best_id": experiment["best"]["run_id"] if experiment["best"] else None,
        "searched": searched(experiment),
    }


def experiment_csv(experiment_id: int) -> str:
    return runs_csv(experiment_json(get_experiment(experiment_id), runs=runs_of(experiment_id)))


def run_curve(run: dict[str, Any], metric: str) -> dict[str, Any]:
    """The run's learning curve as a chart (None without points) and whose points they are:
    a reused run without points of its own shows those of the run it took its result from."""
    source = run["id"]
    points = curve_json(source)
    if not points and run["reused_from"] is not None:
        source = run["reused_from"]
        points = curve_json(source)
    return {"chart": run_curve_chart(run, points, metric), "source": source}


def run_page(settings: Settings, run_id: int) -> dict[str, Any]:
    row = get_run(run_id)
    run = run_json(row)
    folder = settings.runs_dir / str(run_id)
    experiment = get_experiment(row.experiment_id)
    return {"run": run, "model_id": experiment.model_id,
            "curve": run_curve(run, experiment.objective_metric),
            "model_name": get_model(experiment.model_id).name, "host": host_of(row.worker),
            "stdout": read_tail(folder / STDOUT_NAME, LOG_LIMIT),
            "stderr": read_tail(folder / STDERR_NAME, LOG_LIMIT),
            "is_best": experiment.best_run_id == run_id, "repeats": experiment.repeats,
            "objective": {"metric": experiment.objective_metric,
                          "direction": experiment.objective_direction}}


def age(moment: str | None) -> str:
    if not moment:
        return ""
    return datetime.fromisoformat(moment.rstrip("Z")).strftime("%Y-%m-%d %H:%M:%S UTC")
