"""`train(run_id)`: run the training script for one grid point and record how it went.

Safe to run twice: the run is claimed first. A message for a run that already ended is
acknowledged and nothing else; a message for a run another live worker holds is put back with a
delay (it was a duplicate, or its worker just died and the lease has not expired yet). The
same code serves a local worker and a remote one: only the store differs (actors.store).
"""

from __future__ import annotations

import logging
import time

import dramatiq
from dramatiq.middleware import Shutdown, SkipMessage

from actors.context import worker_context
from actors.gpus import gpu_env
from actors.stores.base import CodeUnusable, RunStore, StoreUnreachable, WorkerRefused
from service.contract import Claim, ClaimOutcome, Outcome, RunSpec, RunStatus
from service.dispatch.broker import TRAIN_ACTOR, TRAIN_QUEUE, send_aggregate, send_train
from service.execution.supervise import kill_leftovers, this_worker
from service.execution.training import STDOUT_NAME, TrainingJob, run_training
from service.settings import Settings

log = logging.getLogger("sweeplab.train")
# Heartbeats go out every third of the lease (two may be lost before it runs out), and at least
# this often: a remote worker's logs follow its runs at this pace. Every 2 s with the default
# 30 s lease; every 0.5 s with a 1.5 s one, so that a cancel is noticed that much sooner.
MAX_HEARTBEAT_EVERY_S = 2.0
# With early stopping, a heartbeat (which shows the pruner the curve) also goes out as soon as
# the script printed more, at most this often: runs shorter than a heartbeat get judged too.
CURVE_LOOK_EVERY_S = 0.25


def heartbeat_every_s(lease_s: float) -> float:
    return min(MAX_HEARTBEAT_EVERY_S, lease_s / 3)


class LeaseKeeper:
    """Renews the run's lease while the child runs; says when this attempt should stop.

    When the store cannot be reached (a partition, the API restarting) the script goes on,
    but only until the lease runs out: by then another worker may have taken the run over."""

    def __init__(self, store: RunStore, spec: RunSpec, attempt: int, lease_s: float) -> None:
        self.store, self.spec, self.attempt, self.lease_s = store, spec, attempt, lease_s
        self.heartbeat_s = heartbeat_every_s(lease_s)
        self.last_try = self.renewed = time.monotonic()  # the claim renewed it just now
        self.pgid: int | None = None  # the script's, until a heartbeat has recorded it
        self.output_seen = 0  # bytes of its output when a heartbeat last went out

    def _output_size(self) -> int:
        try:
            return (self.store.run_dir(self.spec.run_id) / STDOUT_NAME).stat().st_size
        except OSError:
            return self.output_seen

    def _printed_more(self) -> bool:
        """With early stopping: the script printed since the last heartbeat, a while ago."""
        if not self.spec.early_stopping or time.monotonic() - self.last_try < CURVE_LOOK_EVERY_S:
            return False
        return self._output_size() > self.output_seen

    def __call__(self, pgid: int | None) -> bool:
        if pgid is not None:
            # Recorded with the first heartbeat, not in a transaction of its own: a run
            # shorter than a heartbeat costs none (its script dies with this worker anyway,
            # by its parent-death signal; the pgid only helps a later attempt clean up).
            self.pgid = pgid
            return True
        if time.monotonic() - self.last_try < self.heartbeat_s and not self._printed_more():
            return True
        self.last_try = time.monotonic()
        if self.spec.early_stopping:  # only they heartbeat early, when more was printed
            self.output_seen = self._output_size()
        try:
            mine = self.store.heartbeat(self.spec, self.attempt, child_pgid=self.pgid)
        except StoreUnreachable as error:
            if time.monotonic() - self.renewed < self.lease_s:
                return True
            log.warning("run %s: lease not renewed for %g s (%s); stopping its script",
                        self.spec.run_id, self.lease_s, error)
            return False
        self.renewed = time.monotonic()
        self.pgid = None  # recorded
        return mine

    @property
    def poll_s(self) -> float:
        """How often the supervisor should ask this keeper: twice a heartbeat, so that one
        goes out at most half a heartbeat late; with early stopping, to look at the curve."""
        half = self.heartbeat_s / 2
        return min(half, CURVE_LOOK_EVERY_S) if self.spec.early_stopping else half


def _handle_unclaimed(claim: Claim, spec: RunSpec | None, lease_s: float) -> None:
    if spec is None:
        return  # gone (its model was deleted)
    if claim.outcome == ClaimOutcome.BUSY:
        # Another worker holds it, or held it and died moments ago: look again after a lease.
        send_train(dramatiq.get_broker(), spec.run_id, spec.timeout_s,
                   delay_ms=int(lease_s * 1000))
    elif claim.outcome in (ClaimOutcome.DONE, ClaimOutcome.EXHAUSTED):
        # Its result may have been written by a worker that died before its aggregate went out.
        send_aggregate(dramatiq.get_broker(), spec.experiment_id)


def _execute(settings: Settings, store: RunStore, spec: RunSpec, claim: Claim,
             worker: str) -> None:
    if claim.previous_pgid:
        kill_leftovers(claim.previous_pgid, spec.run_id, store.run_dir(spec.run_id))
    try:
        images = store.snapshot(spec)
        tree = store.code_tree(spec) if spec.code else None
    except CodeUnusable as unusable:  # the code is not what the run needs: it cannot succeed
        outcome = Outcome(RunStatus.FAILED, error=str(unusable))
        if not store.finish(spec, claim.attempt, worker, outcome) or spec.aggregate_later:
            send_aggregate(dramatiq.get_broker(), spec.experiment_id)  # as below
        return
    except BaseException:  # no images (API unreachable, bad bytes): let another try begin
        store.requeue(spec, claim.attempt, worker)
        raise
    keeper = LeaseKeeper(store, spec, claim.attempt, settings.lease_s)
    job = TrainingJob(spec.run_id, spec.params, images,
                      store.run_dir(spec.run_id), spec.timeout_s, gpu_env(), spec.metric,
                      spec.seed, poll_s=keeper.poll_s, code=spec.code, tree=tree)
    try:
        outcome = run_training(settings, job, keeper)
    except Shutdown:
        # A fresh message, not a Dramatiq retry, so restarts never use up the retry budget.
        store.requeue(spec, claim.attempt, worker)
        send_train(dramatiq.get_broker(), spec.run_id, spec.timeout_s)
        return
    recorded = not outcome.stopped and store.finish(spec, claim.attempt, worker, outcome)
    if not recorded:
        log.info("run %s attempt %s ended after it was cancelled, pruned or taken over; "
                 "not recorded", spec.run_id, claim.attempt)
    if not recorded or spec.aggregate_later:
        # A recorded result was aggregated with it, unless its experiment is aggregated later
        # (a TPE search, which must ask for more); an attempt ended otherwise leaves its
        # experiment to be looked at again.
        send_aggregate(dramatiq.get_broker(), spec.experiment_id)


@dramatiq.actor(actor_name=TRAIN_ACTOR, queue_name=TRAIN_QUEUE,
                # The real limit is the run's own, enforced on the child by the worker; each
                # message carries this above it (see service.dispatch.broker.train_time_limit_ms).
                time_limit=24 * 3600 * 1000,
                # A script's failure is a result, not an exception: only infrastructure errors
                # (database, broker, API) raise here, and those are worth a few patient retries.
                max_retries=5, min_backoff=1_000, max_backoff=60_000,
                # On shutdown, interrupt the actor so it kills its script and requeues the run,
                # instead of holding the worker's stop for a whole training run.
                notify_shutdown=True)
def train(run_id: int) -> None:
    context = worker_context()
    settings, store = context.settings, context.store
    worker = this_worker()
    try:
        claim, spec = store.claim(run_id, worker, settings.lease_s)
        if claim.outcome != ClaimOutcome.CLAIMED or spec is None:
            _handle_unclaimed(claim, spec, settings.lease_s)
            return
        _execute(settings, store, spec, claim, worker)
    except WorkerRefused as refused:
        # Not the run's failure, nor worth a retry: the API refuses this worker. The message
        # goes back to the queue for another (actors.middleware.StopWhenRefused).
        raise SkipMessage(str(refused)) from None
