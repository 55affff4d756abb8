"""Run state changes: claims, leases, takeovers, and results that arrive too late."""

from __future__ import annotations

from datetime import timedelta

from service.contract import ClaimOutcome, RunStatus
from service.core.tables import Experiment, Run, RunEvent
from service.core.timeutil import utcnow
from service.runs.state import MAX_ATTEMPTS, claim_run, heartbeat, transition
from tests.helpers import make_run

DEAD_LOCAL_WORKER = "host-that-is-not-this-one:1"


def test_a_queued_run_is_claimed_once(db):
    run_id = make_run(db)
    first = claim_run(run_id, "w1", lease_s=30)
    assert (first.outcome, first.attempt) == (ClaimOutcome.CLAIMED, 1)
    # A duplicate message while w1 is alive and beating: not run a second time at once
    assert claim_run(run_id, "w2", lease_s=30).outcome == ClaimOutcome.BUSY
    assert Run.get_by_id(run_id).worker == "w1"


def test_a_silent_worker_loses_its_run_then_the_run_fails_after_max_attempts(db):
    run_id = make_run(db)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claim = claim_run(run_id, DEAD_LOCAL_WORKER, lease_s=30)
        assert (claim.outcome, claim.attempt) == (ClaimOutcome.CLAIMED, attempt)
        stale = utcnow() - timedelta(seconds=31)
        Run.update(heartbeat_at=stale).where(Run.id == run_id).execute()
    exhausted = claim_run(run_id, "w9", lease_s=30)
    assert exhausted.outcome == ClaimOutcome.EXHAUSTED
    run = Run.get_by_id(run_id)
    assert run.status == RunStatus.FAILED and run.error.startswith("worker lost")
    assert claim_run(run_id, "w9", lease_s=30).outcome == ClaimOutcome.DONE


def test_a_run_whose_local_worker_process_is_gone_is_taken_over_at_once(db):
    import socket

    run_id = make_run(db)
    gone = f"{socket.gethostname()}:{2**22 + 12345}"  # above pid_max: no such process
    claim_run(run_id, gone, lease_s=30)
    takeover = claim_run(run_id, "w2", lease_s=30)
    assert (takeover.outcome, takeover.attempt, takeover.previous_worker) == (
        ClaimOutcome.CLAIMED, 2, gone)


def test_a_result_after_cancel_or_takeover_is_not_recorded(db):
    run_id = make_run(db)
    claim = claim_run(run_id, "w1", lease_s=30)
    assert transition(run_id, RunStatus.CANCELLED, actor="api", reason="cancelled by user",
                      expect={RunStatus.QUEUED, RunStatus.RUNNING})
    assert not heartbeat(run_id, claim.attempt)  # the worker learns it must stop
    late = transition(run_id, RunStatus.SUCCEEDED, actor="w1", expect={RunStatus.RUNNING},
                      attempt=claim.attempt, accuracy=0.9)
    assert not late
    assert Run.get_by_id(run_id).status == RunStatus.CANCELLED
    events = [(e.from_status, e.to_status, e.actor)
              for e in RunEvent.select().order_by(RunEvent.id)]
    assert events == [("queued", "running", "w1"), ("running", "cancelled", "api")]


def test_an_older_attempt_cannot_record_over_a_newer_one(db):
    run_id = make_run(db)
    first = claim_run(run_id, DEAD_LOCAL_WORKER, lease_s=30)
    Run.update(heartbeat_at=utcnow() - timedelta(seconds=60)).where(Run.id == run_id).execute()
    second = claim_run(run_id, "w2", lease_s=30)
    assert not transition(run_id, RunStatus.SUCCEEDED, actor="old", expect={RunStatus.RUNNING},
                          attempt=first.attempt, accuracy=0.1)
    assert transition(run_id, RunStatus.SUCCEEDED, actor="w2", expect={RunStatus.RUNNING},
                      attempt=second.attempt, accuracy=0.8)
    assert Run.get_by_id(run_id).accuracy == 0.8


def test_the_reconciler_settles_an_experiment_whose_last_aggregate_went_missing(db, settings):
    from dramatiq.brokers.stub import StubBroker

    from service.dispatch.publish import reconcile

    # Given every run ended but the experiment still says running (its aggregate was lost)
    run_id = make_run(db)
    Run.update(status="succeeded", accuracy=0.7, value=0.7).where(Run.id == run_id).execute()
    # When the reconciler passes
    assert reconcile(settings, StubBroker())["settled"] == 1
    # Then the status and the best are right, and a second pass has nothing to do
    experiment = Experiment.get()
    assert (experiment.status, experiment.best_run_id) == ("completed", run_id)
    assert reconcile(settings, StubBroker())["settled"] == 0


def test_an_aggregate_arriving_while_another_waits_is_left_to_it(db):
    import threading
    import time

    import service.sweeps.aggregate as aggregate_module
    from service.core.db import write_transaction
    from service.sweeps.aggregate import aggregate_experiment

    run_id = make_run(db)
    experiment_id = Run.get_by_id(run_id).experiment_id
    results = []
    with write_transaction():  # hold the writer lock: the first pass must wait for it
        first = threading.Thread(target=lambda: results.append(
            aggregate_experiment(experiment_id)))
        first.start()
        while not aggregate_module._waiting:
            time.sleep(0.001)
        assert aggregate_experiment_skipped(experiment_id)
    first.join()
    assert results == [True]


def aggregate_experiment_skipped(experiment_id: int) -> bool:
    import threading

    from service.sweeps.aggregate import aggregate_experiment

    outcome = []
    other = threading.Thread(target=lambda: outcome.append(aggregate_experiment(experiment_id)))
    other.start()
    other.join()
    return outcome == [False]


def test_only_tpe_searches_are_aggregated_by_the_actor():
    from service.core.tables import Experiment
    from service.runs.state import aggregate_later

    def experiment(grid: dict, repeats: int = 1, search: dict | None = None) -> Experiment:
        return Experiment(grid=grid, repeats=repeats, search=search)

    default = {"i": [0.001, 0.01, 0.1], "j": [1, 2, 4], "k": [1000, 2000, 4000]}
    assert not aggregate_later(experiment(default))  # with each result
    assert not aggregate_later(experiment(default, repeats=40))  # 1,080 runs: the same
    assert aggregate_later(experiment({"i": {"low": 0.1, "high": 1}},
                                      search={"strategy": "tpe", "runs": 5}))
    assert not aggregate_later(experiment({"i": [0.1]}, repeats=3,
                                          search={"strategy": "random", "runs": 40}))
