"""`train(run_id)`: run the training script for one grid point and record how it went.

Safe to run twice: the run is claimed in the database first. A message for a run that already
ended is acknowledged and nothing else; a message for a run another live worker holds is put back
with a delay (it was a duplicate, or its worker just died and the lease has not expired yet).
"""

from __future__ import annotations

import logging
import time

import dramatiq
from dramatiq.middleware import Shutdown

from service.broker import TRAIN_ACTOR, TRAIN_QUEUE, send_aggregate, send_train
from service.models import Experiment, Run, RunStatus
from service.runstate import Claim, ClaimOutcome, claim_run, heartbeat, this_worker, transition
from service.settings import Settings
from service.supervise import kill_leftovers
from service.timeutil import utcnow
from service.training import Outcome, run_training

log = logging.getLogger("sweeplab.train")
HEARTBEAT_EVERY_S = 2.0


def _settings() -> Settings:
    from actors import settings  # the worker's settings, read once at start

    return settings


class LeaseKeeper:
    """Renews the run's lease while the child runs; says when this attempt should stop."""

    def __init__(self, run_id: int, attempt: int) -> None:
        self.run_id, self.attempt = run_id, attempt
        self.last = 0.0

    def __call__(self, pgid: int | None) -> bool:
        if pgid is not None:
            return heartbeat(self.run_id, self.attempt, child_pgid=pgid)
        if time.monotonic() - self.last < HEARTBEAT_EVERY_S:
            return True
        self.last = time.monotonic()
        return heartbeat(self.run_id, self.attempt)


def _record(run_id: int, attempt: int, worker: str, outcome: Outcome) -> bool:
    return transition(
        run_id, outcome.status, actor=worker, expect={RunStatus.RUNNING}, attempt=attempt,
        reason=outcome.error, accuracy=outcome.accuracy, exit_code=outcome.exit_code,
        error=outcome.error, duration_s=outcome.duration_s, finished_at=utcnow(), child_pgid=None,
    )


def _requeue_on_shutdown(run_id: int, attempt: int, worker: str, timeout_s: float) -> None:
    """The worker is stopping (its script was killed): put the run back for another worker.

    A fresh message, not a Dramatiq retry, so restarts never use up the retry budget."""
    transition(run_id, RunStatus.QUEUED, actor=worker, expect={RunStatus.RUNNING},
               attempt=attempt, reason="worker stopped mid-run; queued again",
               heartbeat_at=None, child_pgid=None, nudged_at=utcnow())
    send_train(dramatiq.get_broker(), run_id, timeout_s)


def _handle_unclaimed(run_id: int, claim: Claim, lease_s: float) -> None:
    if claim.outcome == ClaimOutcome.BUSY:
        # Another worker holds it, or held it and died moments ago: look again after a lease.
        timeout_s = Run.get_by_id(run_id).experiment.timeout_s
        send_train(dramatiq.get_broker(), run_id, timeout_s, delay_ms=int(lease_s * 1000))
    elif claim.outcome in (ClaimOutcome.DONE, ClaimOutcome.EXHAUSTED):
        # Its result may have been written by a worker that died before its aggregate went out.
        send_aggregate(dramatiq.get_broker(), Run.get_by_id(run_id).experiment_id)


def _execute(settings: Settings, run_id: int, claim: Claim, worker: str) -> None:
    if claim.previous_pgid:
        kill_leftovers(claim.previous_pgid, run_id)
    run = Run.get_by_id(run_id)
    experiment = Experiment.get_by_id(run.experiment_id)
    try:
        outcome = run_training(settings, run, experiment.timeout_s,
                               LeaseKeeper(run_id, claim.attempt))
    except Shutdown:
        _requeue_on_shutdown(run_id, claim.attempt, worker, experiment.timeout_s)
        return
    if outcome.stopped or not _record(run_id, claim.attempt, worker, outcome):
        log.info("run %s attempt %s ended after it was cancelled or taken over; not recorded",
                 run_id, claim.attempt)
    send_aggregate(dramatiq.get_broker(), run.experiment_id)


@dramatiq.actor(actor_name=TRAIN_ACTOR, queue_name=TRAIN_QUEUE,
                # The real limit is the run's own, enforced on the child by the worker; each
                # message carries this above it (see service.broker.train_time_limit_ms).
                time_limit=24 * 3600 * 1000,
                # A script's failure is a result, not an exception: only infrastructure errors
                # (database, broker) raise here, and those are worth a few patient retries.
                max_retries=5, min_backoff=1_000, max_backoff=60_000,
                # On shutdown, interrupt the actor so it kills its script and requeues the run,
                # instead of holding the worker's stop for a whole training run.
                notify_shutdown=True)
def train(run_id: int) -> None:
    settings = _settings()
    worker = this_worker()
    claim = claim_run(run_id, worker, settings.lease_s)
    if claim.outcome != ClaimOutcome.CLAIMED:
        _handle_unclaimed(run_id, claim, settings.lease_s)
        return
    _execute(settings, run_id, claim, worker)
