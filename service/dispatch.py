"""Getting runs to the workers, and noticing when a message went missing.

Publishing marks the experiment `unpublished` first and clears the mark once every queued run's
message has reached RabbitMQ. The reconciler, a loop in the API, finishes what a crash or a
broker outage interrupted, and re-sends the message of a running run whose worker has gone
silent past its lease (host died, message lost): the claim then takes it over, or fails it as
"worker lost" after the allowed attempts. Messages are nudges; the database is the truth, so a
message sent twice costs a look and nothing more.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq

from service.aggregate import aggregate_experiment
from service.broker import send_train
from service.db import database
from service.models import Experiment, ExperimentStatus, Run, RunStatus
from service.settings import Settings
from service.timeutil import utcnow

log = logging.getLogger("sweeplab.dispatch")


def publish_experiment(broker: dramatiq.Broker, experiment_id: int) -> int:
    """Send a message for each queued run, then clear the mark; raises BrokerUnavailable."""
    experiment = Experiment.get_by_id(experiment_id)
    queued = (Run.select(Run.id).where(Run.experiment == experiment_id,
                                       Run.status == RunStatus.QUEUED.value).order_by(Run.id))
    run_ids = [run.id for run in queued]
    for run_id in run_ids:
        send_train(broker, run_id, experiment.timeout_s)
    Experiment.update(unpublished=False).where(Experiment.id == experiment_id).execute()
    aggregate_experiment(experiment_id)  # runs may all have ended before the mark was cleared
    return len(run_ids)


def _unsettled() -> list[Experiment]:
    """Running experiments none of whose runs is left: their last aggregate went missing."""
    active = Run.select(Run.experiment).where(
        Run.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
    return list(Experiment.select(Experiment.id).where(
        Experiment.status == ExperimentStatus.RUNNING.value,
        Experiment.unpublished == False,  # noqa: E712 (a SQL expression)
        Experiment.id.not_in(active)))


def _lost_runs(lease_s: float) -> list[Run]:
    silent_since = utcnow() - timedelta(seconds=lease_s)
    return list(Run.select(Run.id, Experiment.timeout_s).join(Experiment).where(
        Run.status == RunStatus.RUNNING.value,
        (Run.heartbeat_at < silent_since) | Run.heartbeat_at.is_null(),
        (Run.nudged_at < silent_since) | Run.nudged_at.is_null(),
    ))


def reconcile(settings: Settings, broker: dramatiq.Broker) -> dict[str, int]:
    """One pass: publish what is unpublished, nudge runs whose worker went silent."""
    database.connect(reuse_if_open=True)
    pending = Experiment.select(Experiment.id).where(
        Experiment.unpublished == True,  # noqa: E712 (a SQL expression, not a comparison)
        Experiment.status == ExperimentStatus.RUNNING.value)
    published = sum(publish_experiment(broker, experiment.id) for experiment in pending)
    settled = sum(aggregate_experiment(experiment.id) for experiment in _unsettled())
    nudged = 0
    for run in _lost_runs(settings.lease_s):
        send_train(broker, run.id, run.experiment.timeout_s)
        Run.update(nudged_at=utcnow()).where(Run.id == run.id).execute()
        nudged += 1
    if published or nudged or settled:
        log.info("reconciled: %d message(s) published, %d silent run(s) nudged, %d "
                 "experiment(s) settled", published, nudged, settled)
    return {"published": published, "nudged": nudged, "settled": settled}
