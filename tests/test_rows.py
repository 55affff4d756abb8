"""Queries whose SQL is built once: each call gets its own values, and a query that would
repeat a value of its own making (a default, the time) is refused when it is first built."""

from __future__ import annotations

import pytest

from service.contract import RunStatus
from service.core.queries import run_kept
from service.core.tables import MLModel, Run, RunEvent
from service.runs.state import transition
from tests.helpers import make_run


def name_of(model_id: int) -> str | None:
    row = run_kept("test name_of", lambda key: (
        MLModel.select(MLModel.name).where(MLModel.id == key)), model_id).fetchone()
    return None if row is None else row[0]


def test_a_kept_query_answers_each_call_with_its_own_values(db):
    first, second = MLModel.create(name="first"), MLModel.create(name="second")
    assert [name_of(first.id), name_of(second.id), name_of(first.id)] == [
        "first", "second", "first"]
    assert name_of(10**9) is None
    by_name = run_kept("test id_of", lambda name: (
        MLModel.select(MLModel.id).where(MLModel.name == name)), "second").fetchall()
    assert by_name == [(second.id,)]


def test_a_query_that_leaves_an_argument_out_is_refused(db):
    with pytest.raises(RuntimeError, match="does not use each of its 1 arguments"):
        run_kept("test unused", lambda key: MLModel.select().where(MLModel.id == 5), 1)


def test_a_query_holding_a_value_made_as_it_is_built_is_refused(db):
    run_id = make_run(db)
    # RunEvent.at defaults to the time of building: kept, every event would get the first's
    with pytest.raises(RuntimeError, match="holds a value that changes"):
        run_kept("test event", lambda run, actor: RunEvent.insert(
            run=run, from_status="queued", to_status="running", actor=actor), run_id, "w")
    assert RunEvent.select().where(RunEvent.run == run_id).count() == 0


def test_a_transition_writes_each_value_as_its_field_would(db):
    run_id = make_run(db)
    assert transition(run_id, RunStatus.RUNNING, actor="w", expect={RunStatus.QUEUED},
                      pruner_state={"rungs": [1, 2]}, worker="w")
    assert transition(run_id, RunStatus.PRUNED, actor="pruner", expect={RunStatus.RUNNING},
                      pruned_step=3, pruned_value=0.5)
    run = Run.get_by_id(run_id)
    assert (run.status, run.pruner_state, run.worker, run.pruned_step, run.pruned_value) == (
        RunStatus.PRUNED, {"rungs": [1, 2]}, "w", 3, 0.5)
    events = RunEvent.select().where(RunEvent.run == run_id).order_by(RunEvent.id)
    assert [(e.from_status, e.to_status) for e in events] == [
        ("queued", "running"), ("running", "pruned")]
    assert events[0].at < events[1].at  # each event's own time, not the first one's
