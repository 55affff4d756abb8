"""Getting runs to the workers, and noticing when a message went missing.

Publishing marks the experiment `unpublished` first and clears the mark once every queued run's
message has reached RabbitMQ. The reconciler, a loop in the API, finishes what a crash or a
broker outage interrupted, and re-sends the message of a running run whose worker has gone
silent past its lease (host died, message lost): the claim then takes it over, or fails it as
"worker lost" after the allowed attempts. No run stays queued without a message that will
deliver it: dead-lettered messages are taken back and sent again (a run whose message is
dead-lettered MAX_DEAD_LETTERS times ends `failed` with the last error, an infrastructure
fault), and a queued run whose message went missing (the queue holds nothing, yet the run has
waited past a lease) is sent again. A dead-lettered aggregate message's work is done by the
reconciler itself. Messages are nudges; the database is the truth, so a message sent twice
costs a look and nothing more.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

import dramatiq
import pika.exceptions
from peewee import ModelSelect, fn

from service.contract import ACTIVE_RUN_VALUES, ExperimentStatus, RunStatus
from service.core.db import database, write_transaction
from service.core.queries import row_by_id
from service.core.tables import Experiment, Run
from service.core.timeutil import utcnow
from service.dispatch.broker import AGGREGATE_QUEUE, TRAIN_QUEUE, BrokerUnavailable, send_train
from service.dispatch.redelivery import DeadLetter, take_dead_letters, train_queue_is_empty
from service.runs.state import transition
from service.settings import Settings
from service.sweeps.aggregate import aggregate_experiment, recompute_statistics
from service.sweeps.reuse import reuse_known_results
from service.sweeps.trials import extend_search

log = logging.getLogger("sweeplab.dispatch")
MAX_DEAD_LETTERS = 3


def publish_experiment(broker: dramatiq.Broker, experiment_id: int, settings: Settings) -> int:
    """Move the experiment on: runs not sent yet whose result is known take it, a TPE search
    asks for the configurations it has room for, a message goes out for each queued run not
    sent yet, then the experiment is aggregated. An experiment deleted meanwhile (with its
    model, say, just after its last run) needs nothing: 0.
    Raises BrokerUnavailable. Runs are marked sent only once sent (a crash in between sends
    them again, which costs a look), and the unpublished mark is cleared only when no run is
    left unsent (another process may have just added some)."""
    reuse_known_results(settings, experiment_id)
    _ask_for_more(settings, experiment_id)
    experiment = row_by_id(Experiment, experiment_id)
    if experiment is None:
        return 0
    unsent = (Run.status == RunStatus.QUEUED.value) & Run.nudged_at.is_null()
    queued = Run.select(Run.id).where(Run.experiment == experiment_id, unsent).order_by(Run.id)
    run_ids = [run.id for run in queued]
    for run_id in run_ids:
        send_train(broker, run_id, experiment.timeout_s)
    for start in range(0, len(run_ids), 500):
        Run.update(nudged_at=utcnow()).where(Run.id.in_(run_ids[start:start + 500])).execute()
    if experiment.unpublished or run_ids:
        left = Run.select().where(Run.experiment == experiment_id, unsent)
        Experiment.update(unpublished=False).where(Experiment.id == experiment_id,
                                                   ~fn.EXISTS(left)).execute()
    aggregate_experiment(experiment_id)  # runs may all have ended before the mark was cleared
    return len(run_ids)


def _ask_for_more(settings: Settings, experiment_id: int) -> None:
    """A TPE search's next configurations; again while known results complete them at once."""
    while extend_search(experiment_id) and reuse_known_results(settings, experiment_id):
        pass


def _unsettled() -> list[Experiment]:
    """Running experiments none of whose runs is left: their last aggregate went missing. A
    probe of the (experiment, status) index for each running experiment, not a list of every
    active run: this runs every few seconds beside sweeps of 10,000 runs."""
    active = Run.select(Run.id).where(Run.experiment == Experiment.id,
                                      Run.status.in_(ACTIVE_RUN_VALUES))
    return list(Experiment.select(Experiment.id).where(
        Experiment.status == ExperimentStatus.RUNNING.value,
        Experiment.unpublished == False,  # noqa: E712 (a SQL expression)
        ~fn.EXISTS(active)))


def _settle(broker: dramatiq.Broker, settings: Settings, experiments: list[Experiment]) -> int:
    for experiment in experiments:
        with write_transaction():  # a repair: its kept statistics too, from the runs
            recompute_statistics(experiment.id)
        publish_experiment(broker, experiment.id, settings)  # a TPE search may ask for more
    return len(experiments)


def _heard_a_lease(listening_since: datetime | None, lease_s: float) -> bool:
    return listening_since is None or utcnow() - listening_since > timedelta(seconds=lease_s)


def _lost_runs(lease_s: float) -> list[Run]:
    """Running runs whose worker went silent past a lease and were not nudged since."""
    silent_since = utcnow() - timedelta(seconds=lease_s)
    return list(Run.select(Run.id, Experiment.timeout_s).join(Experiment).where(
        Run.status == RunStatus.RUNNING.value,
        (Run.heartbeat_at < silent_since) | Run.heartbeat_at.is_null(),
        (Run.nudged_at < silent_since) | Run.nudged_at.is_null(),
    ))


def _lost_queued_runs(lease_s: float) -> ModelSelect[Run]:
    """Queued runs of published, running experiments, sent more than a lease ago."""
    sent_before = utcnow() - timedelta(seconds=lease_s)
    return Run.select(Run.id, Experiment.timeout_s).join(Experiment).where(
        Run.status == RunStatus.QUEUED.value,
        Experiment.status == ExperimentStatus.RUNNING.value,
        Experiment.unpublished == False,  # noqa: E712 (a SQL expression)
        (Run.nudged_at < sent_before) | Run.nudged_at.is_null(),
    )


def _nudge(broker: dramatiq.Broker, runs: list[Run]) -> int:
    for run in runs:
        send_train(broker, run.id, run.experiment.timeout_s)
        Run.update(nudged_at=utcnow()).where(Run.id == run.id).execute()
    return len(runs)


def redeliver_dead_letter(broker: dramatiq.Broker, letter: DeadLetter) -> None:
    """Send a dead-lettered run again, or fail it once its messages died too often."""
    run = row_by_id(Run, letter.subject_id)
    if run is None or run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
        return  # deleted, or ended meanwhile: the message is not needed
    if run.dead_letters + 1 >= MAX_DEAD_LETTERS:
        reason = (f"could not be run: its message failed on every delivery and was "
                  f"dead-lettered {run.dead_letters + 1} times (database or broker trouble on "
                  f"the workers?); last error: {letter.last_error}")
        transition(run.id, RunStatus.FAILED, actor="reconciler", reason=reason,
                   expect={RunStatus.QUEUED, RunStatus.RUNNING}, error=reason,
                   finished_at=utcnow(), child_pgid=None)
        aggregate_experiment(run.experiment_id)
        return
    log.warning("run %s: its message was dead-lettered (%s); sending it again", run.id,
                letter.last_error)
    Run.update(dead_letters=Run.dead_letters + 1, nudged_at=utcnow()).where(
        Run.id == run.id).execute()
    experiment = row_by_id(Experiment, run.experiment_id)
    if experiment is not None:  # deleted meanwhile: nothing to send
        send_train(broker, run.id, experiment.timeout_s)


def redo_dead_aggregate(broker: dramatiq.Broker, settings: Settings, letter: DeadLetter) -> None:
    """Do here what a dead-lettered aggregate message asked for (it is idempotent and cheap).
    Sent again, a message that keeps failing would die again ten retries later, over and over,
    with nothing to count how often; here a failure keeps the letter for the next pass."""
    log.warning("experiment %s: its aggregate message was dead-lettered (%s); aggregating it "
                "here", letter.subject_id, letter.last_error)
    publish_experiment(broker, letter.subject_id, settings)


def reconcile(settings: Settings, broker: dramatiq.Broker,
              listening_since: datetime | None = None) -> dict[str, int]:
    """One pass: publish what is unpublished, bring back what was dead-lettered or lost, and
    nudge runs whose worker went silent. Raises BrokerUnavailable when RabbitMQ is down.

    `listening_since`: when this API started. A worker cannot be heard while the API is down,
    so no run is taken for silent in the first lease after it starts: a remote worker holding
    a finished run's result gets that long to deliver it."""
    try:
        return _reconcile(settings, broker, listening_since)
    except (dramatiq.errors.BrokerConnectionError, pika.exceptions.AMQPError) as error:
        raise BrokerUnavailable(f"RabbitMQ is unreachable: {error!r}") from error


def _reconcile(settings: Settings, broker: dramatiq.Broker,
               listening_since: datetime | None) -> dict[str, int]:
    database.connect(reuse_if_open=True)
    pending = Experiment.select(Experiment.id).where(
        Experiment.unpublished == True,  # noqa: E712 (a SQL expression, not a comparison)
        Experiment.status == ExperimentStatus.RUNNING.value)
    counts = {
        "published": sum(publish_experiment(broker, experiment.id, settings)
                         for experiment in pending),
        "dead_lettered": take_dead_letters(broker, TRAIN_QUEUE,
                                           partial(redeliver_dead_letter, broker)),
        "dead_lettered_aggregates": take_dead_letters(
            broker, AGGREGATE_QUEUE, partial(redo_dead_aggregate, broker, settings)),
        "settled": _settle(broker, settings, _unsettled()),
        "nudged": _nudge(broker, _lost_runs(settings.lease_s))
        if _heard_a_lease(listening_since, settings.lease_s) else 0,
    }
    # A big sweep's queue holds thousands of runs sent long ago and not lost: whether any such
    # run exists is asked first, and the list read only when the queue is empty.
    lost = _lost_queued_runs(settings.lease_s)
    counts["requeued"] = (_nudge(broker, list(lost))
                          if lost.exists() and train_queue_is_empty(broker) else 0)
    if any(counts.values()):
        log.info("reconciled: %s", ", ".join(f"{n} {what}" for what, n in counts.items()))
    return counts
