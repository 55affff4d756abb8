"""Early stopping: Optuna's median or successive-halving pruner, asked about a run each time its
learning curve gains points. Like the sampler, the pruner works on an in-memory study rebuilt
from the database: one trial per run of the experiment, with its curve. What the pruner notes
of a run (successive halving's rungs reached) is kept in `run.pruner_state`, so each decision
sees the ones before it. A pruned run ends `pruned`, with the step and value it stopped at;
its worker sees that at its next heartbeat and stops the script, as for a cancel."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from service.contract import RunStatus
from service.core.db import write_transaction
from service.core.queries import row_by_id
from service.core.tables import Experiment, Run
from service.core.timeutil import utcnow
from service.runs.curves import CurveFollower, experiment_curves
from service.runs.state import transition
from service.sweeps.sampling import quiet_optuna

STATES = {RunStatus.SUCCEEDED: "COMPLETE", RunStatus.PRUNED: "PRUNED",
          RunStatus.RUNNING: "RUNNING"}  # Optuna's trial states, by name


def make_pruner(rule: dict[str, Any]) -> Any:
    from optuna.pruners import MedianPruner, SuccessiveHalvingPruner  # only with early stopping

    if rule["rule"] == "median":
        # prune below the median of finished runs at the same step, once 5 have finished
        return MedianPruner(n_startup_trials=5, n_warmup_steps=rule["min_step"])
    # judged first at min_step, then at 4x, 16x, ... that step: only the top quarter go on
    return SuccessiveHalvingPruner(min_resource=rule["min_step"])


def _study(experiment: Experiment, run_id: int) -> tuple[Any, dict[int, int]]:
    """The experiment's runs as trials; and the trial number of each run."""
    optuna = quiet_optuna()  # only with early stopping
    study = optuna.create_study(direction=experiment.objective_direction,
                                pruner=make_pruner(experiment.early_stopping))
    curves = experiment_curves(experiment.id)
    numbers: dict[int, int] = {}
    runs = (Run.select(Run.id, Run.status, Run.value, Run.pruner_state)
            .where(Run.experiment == experiment.id).order_by(Run.id))
    for run in runs:
        state = STATES.get(RunStatus(run.status))
        if state is None or (state == "COMPLETE" and run.value is None):
            continue
        if state == "RUNNING" and run.id != run_id and not curves.get(run.id):
            continue
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState[state],
            value=run.value if state == "COMPLETE" else None,
            intermediate_values=curves.get(run.id, {}), system_attrs=run.pruner_state or {}))
        numbers[run.id] = len(numbers)
    return study, numbers


def prune_if_hopeless(run_id: int) -> bool:
    """Ask the experiment's pruner about the run at its latest point; True if it was pruned
    now (or already was)."""
    rule = (Experiment.select(Experiment.early_stopping).join(Run)
            .where(Run.id == run_id).scalar())
    if rule is None:  # most experiments: no write lock taken for them
        return False
    with write_transaction():
        run = row_by_id(Run, run_id)
        if run is None or run.status == RunStatus.PRUNED:
            return run is not None
        experiment = row_by_id(Experiment, run.experiment_id)
        assert experiment is not None  # the run's key holds it (deleting it deletes the run)
        if run.status != RunStatus.RUNNING or not experiment.early_stopping:
            return False
        study, numbers = _study(experiment, run_id)
        trial = study.get_trials(deepcopy=False)[numbers[run_id]]
        if trial.last_step is None:
            return False
        hopeless = study.pruner.prune(study, trial)
        notes = study.get_trials(deepcopy=False)[numbers[run_id]].system_attrs
        if notes != (run.pruner_state or {}):
            Run.update(pruner_state=notes).where(Run.id == run_id).execute()
        if not hopeless:
            return False
        step = trial.last_step
        value = trial.intermediate_values[step]
        rule = experiment.early_stopping["rule"].replace("_", " ")
        now = utcnow()
        return transition(run_id, RunStatus.PRUNED, actor="pruner",
                          reason=f"pruned by the {rule} rule at step {step} (value {value:g})",
                          expect={RunStatus.RUNNING}, attempt=run.attempts,
                          pruned_step=step, pruned_value=value, finished_at=now,
                          duration_s=_seconds_since(run.started_at, now), child_pgid=None)


def _seconds_since(started: datetime | None, now: datetime) -> float | None:
    return None if started is None else round((now - started).total_seconds(), 3)


def keep_going(curves: CurveFollower, run_id: int, stdout: Path, metric: str) -> bool:
    """Follow the run's curve; False once its new points got it pruned."""
    return not (curves.follow(run_id, stdout, metric) and prune_if_hopeless(run_id))
