"""An experiment's runs: one per configuration and seed. A grid's and a random search's are all
made with the experiment; a TPE search's are asked for as results arrive, never more than
`parallel` configurations in flight, until `runs` configurations were asked for."""

from __future__ import annotations

from peewee import fn

from service.contract import ACTIVE_RUN_STATES, GRID, TPE, ExperimentStatus, RunStatus
from service.core.db import insert_in_batches, write_transaction
from service.core.queries import row_by_id, tuple_rows
from service.core.tables import Experiment, Run, RunPoint
from service.sweeps.grid import Params, config_key, expand_grid
from service.sweeps.sampling import TrialRecord, ask, first_configurations


def first_points(experiment: Experiment) -> list[Params]:
    search = experiment.search or {"strategy": GRID}
    if search["strategy"] == GRID:
        return expand_grid(experiment.grid)
    return first_configurations(search, experiment.grid, experiment.objective_direction)


def add_runs(experiment: Experiment, points: list[Params], first_trial: int) -> list[int]:
    """Insert a queued run for each configuration and seed; their ids. A grid's trials are
    all 0 (its parameters tell its configurations apart); a search's are numbered, and a
    configuration a search asks for again is trained with the seeds after those it had, so
    no configuration and seed is ever trained twice in one experiment."""
    numbered = experiment.strategy != GRID
    next_seed: dict[str, int] = {}
    rows = []
    for n, point in enumerate(points):
        key = config_key(point)
        if key not in next_seed:
            next_seed[key] = _next_seed(experiment.id, key) if numbered else 0
        first_seed = next_seed[key]
        next_seed[key] += experiment.repeats
        rows += [{"experiment": experiment.id, "params": point, "config": key, "seed": seed,
                  "trial": first_trial + n if numbered else 0}
                 for seed in range(first_seed, first_seed + experiment.repeats)]
    insert_in_batches(Run, rows)
    trials = {row["trial"] for row in rows}
    return [run_id for (run_id,) in tuple_rows(Run.select(Run.id).where(
        Run.experiment == experiment.id, Run.trial.in_(trials),
        Run.status == RunStatus.QUEUED.value))]  # tuples: no model object per run


def _next_seed(experiment_id: int, config: str) -> int:
    """The first seed this configuration has not had in the experiment."""
    highest = Run.select(fn.MAX(Run.seed)).where(
        Run.experiment == experiment_id, Run.config == config).scalar()
    return 0 if highest is None else highest + 1


def trial_history(experiment_id: int) -> list[TrialRecord]:
    """Every trial so far, in order, with its runs' outcomes (a pruned run with its curve)."""
    records: dict[int, TrialRecord] = {}
    pruned: dict[int, int] = {}
    rows = tuple_rows(Run.select(Run.id, Run.trial, Run.params, Run.status, Run.value)
                      .where(Run.experiment == experiment_id).order_by(Run.trial, Run.id))
    for run_id, trial, params, status, value in rows:
        record = records.setdefault(trial, TrialRecord(params))
        if status in ACTIVE_RUN_STATES:
            record.active += 1
        elif status == RunStatus.SUCCEEDED and value is not None:
            record.values.append(value)
        elif status == RunStatus.PRUNED:
            pruned.setdefault(trial, run_id)
    for trial, run_id in pruned.items():
        points = RunPoint.select(RunPoint.step, RunPoint.value).where(RunPoint.run == run_id)
        records[trial].pruned_curve = dict(tuple_rows(points))
    return [records[trial] for trial in sorted(records)]


def extend_search(experiment_id: int) -> list[int]:
    """Ask TPE for as many configurations as `parallel` leaves room for; the new runs' ids.
    The experiment is marked unpublished with them, so they are sent even after a crash."""
    search = Experiment.select(Experiment.search).where(Experiment.id == experiment_id).scalar()
    if not search or search["strategy"] != TPE:  # read first: no write lock for a grid
        return []
    with write_transaction():
        # one asker at a time per experiment (SQLite's IMMEDIATE transaction already is)
        experiment = row_by_id(Experiment, experiment_id, for_update=True)
        if experiment is None or experiment.status != ExperimentStatus.RUNNING:
            return []
        search = experiment.search
        if not search or search["strategy"] != TPE:
            return []
        history = trial_history(experiment_id)
        in_flight = sum(1 for record in history if record.active)
        room = min(search["parallel"] - in_flight, search["runs"] - len(history))
        if room <= 0:
            return []
        points = ask(search, experiment.grid, experiment.objective_direction, history, room)
        run_ids = add_runs(experiment, points, first_trial=len(history))
        Experiment.update(unpublished=True).where(Experiment.id == experiment_id).execute()
    return run_ids


def search_json(experiment: Experiment) -> dict:
    return experiment.search or {"strategy": GRID}
