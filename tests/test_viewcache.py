"""The polled experiment view is built again exactly when something it shows changed."""

from __future__ import annotations

import json

from service.contract import RunStatus
from service.core.tables import Experiment, MLModel, Run
from service.runs.state import transition
from service.sweeps.trials import add_runs, first_points
from service.web.viewcache import experiment_view_bytes, kept_view_bytes

GRID = {"i": [0.1], "j": [1, 2], "k": [5]}


def _experiment() -> Experiment:
    model = MLModel.create(name="cached")
    experiment = Experiment.create(model=model, grid=GRID, timeout_s=60, status="running")
    add_runs(experiment, first_points(experiment), first_trial=0)
    return experiment


def test_the_view_is_kept_until_a_run_or_the_experiment_changes(db):
    experiment = _experiment()
    first = experiment_view_bytes(experiment.id)
    assert experiment_view_bytes(experiment.id) is first  # nothing changed: the kept bytes
    run = Run.select().where(Run.experiment == experiment.id).first()
    # a run's status change shows at once
    transition(run.id, RunStatus.RUNNING, actor="test", expect={RunStatus.QUEUED})
    second = experiment_view_bytes(experiment.id)
    assert second is not first
    assert json.loads(second)["counts"]["running"] == 1
    # so does a change of the experiment's own row
    Experiment.update(status="cancelled").where(Experiment.id == experiment.id).execute()
    assert json.loads(experiment_view_bytes(experiment.id))["status"] == "cancelled"
    # and a run added without an event (a TPE search asking for more)
    add_runs(Experiment.get_by_id(experiment.id), [{"i": 0.3, "j": 1, "k": 5}], first_trial=0)
    assert len(json.loads(experiment_view_bytes(experiment.id))["runs"]) == 3


def test_the_kept_view_equals_a_fresh_one(db):
    from service.web.views import experiment_json

    experiment = _experiment()
    experiment_view_bytes(experiment.id)
    kept = json.loads(experiment_view_bytes(experiment.id))
    assert kept == json.loads(json.dumps(experiment_json(Experiment.get_by_id(experiment.id))))


def test_the_quick_check_answers_only_while_the_kept_view_is_current(db):
    """What the API answers on the event loop itself: the kept bytes or nothing (then the
    view is built in a thread)."""
    experiment = _experiment()
    assert kept_view_bytes(experiment.id) is None  # never built
    first = experiment_view_bytes(experiment.id)
    assert kept_view_bytes(experiment.id) is first
    run = Run.select().where(Run.experiment == experiment.id).first()
    transition(run.id, RunStatus.RUNNING, actor="test", expect={RunStatus.QUEUED})
    assert kept_view_bytes(experiment.id) is None  # stale
    Experiment.delete_by_id(experiment.id)
    assert kept_view_bytes(experiment.id) is None  # gone


def test_only_changed_runs_are_built_again_and_the_view_equals_a_fresh_one(db, monkeypatch):
    """Each run's view and JSON are kept with its row: a rebuild after one run changed builds
    that one run again, and the spliced JSON still equals the whole view built afresh."""
    import service.web.viewcache as viewcache
    from service.web.views import experiment_json

    experiment = _experiment()
    add_runs(Experiment.get_by_id(experiment.id),
             [{"i": 0.3, "j": 1, "k": 5}, {"i": 0.3, "j": 2, "k": 5}], first_trial=0)
    experiment_view_bytes(experiment.id)
    built: list[int] = []
    real_run_view = viewcache.run_view

    def counted(row):
        built.append(row[0])
        return real_run_view(row)

    monkeypatch.setattr(viewcache, "run_view", counted)
    run = Run.select().where(Run.experiment == experiment.id).order_by(Run.id).first()
    transition(run.id, RunStatus.RUNNING, actor="test", expect={RunStatus.QUEUED})
    spliced = json.loads(experiment_view_bytes(experiment.id))
    assert built == [run.id]
    assert spliced == json.loads(json.dumps(experiment_json(Experiment.get_by_id(experiment.id))))
    assert [r["status"] for r in spliced["runs"]] == ["running", "queued", "queued", "queued"]


def test_a_big_view_is_built_at_most_every_half_second_while_only_its_runs_change(
        db, monkeypatch):
    from service.web import viewcache

    clock = [1000.0]
    monkeypatch.setattr(viewcache.time, "monotonic", lambda: clock[0])
    model = MLModel.create(name="big")
    grid = {"i": [0.1, 0.2, 0.3], "j": list(range(1, 11)), "k": list(range(1, 6))}  # 150 runs
    experiment = Experiment.create(model=model, grid=grid, timeout_s=60, status="running")
    add_runs(experiment, first_points(experiment), first_trial=0)
    first = experiment_view_bytes(experiment.id)
    runs = list(Run.select().where(Run.experiment == experiment.id).order_by(Run.id))
    # Given a run that starts within BIG_REBUILD_S of the last build: the kept view answers
    transition(runs[0].id, RunStatus.RUNNING, actor="test", expect={RunStatus.QUEUED})
    clock[0] += viewcache.BIG_REBUILD_S / 2
    assert experiment_view_bytes(experiment.id) is first
    assert kept_view_bytes(experiment.id) is first
    # Once BIG_REBUILD_S has passed since the build, it is built again
    clock[0] += viewcache.BIG_REBUILD_S / 2
    second = experiment_view_bytes(experiment.id)
    assert json.loads(second)["counts"]["running"] == 1
    # A change of the experiment's own row (its end, its best) shows at once
    transition(runs[1].id, RunStatus.RUNNING, actor="test", expect={RunStatus.QUEUED})
    Experiment.update(status="cancelled").where(Experiment.id == experiment.id).execute()
    third = json.loads(experiment_view_bytes(experiment.id))
    assert third["status"] == "cancelled" and third["counts"]["running"] == 2


def test_a_small_view_shows_every_change_at_once(db, monkeypatch):
    from service.web import viewcache

    monkeypatch.setattr(viewcache.time, "monotonic", lambda: 1000.0)  # no time passes
    experiment = _experiment()
    first = experiment_view_bytes(experiment.id)
    run = Run.select().where(Run.experiment == experiment.id).first()
    transition(run.id, RunStatus.RUNNING, actor="test", expect={RunStatus.QUEUED})
    second = experiment_view_bytes(experiment.id)
    assert second is not first and json.loads(second)["counts"]["running"] == 1
