"""How a training attempt ends, written the same way whether its worker is local or remote."""

from __future__ import annotations

from service.core.db import write_transaction
from service.core.tables import RunStatus
from service.core.timeutil import utcnow
from service.execution.training import Outcome
from service.runs.state import transition
from service.sweeps.aggregate import aggregate_in_transaction


def record_outcome(run_id: int, attempt: int, worker: str, outcome: Outcome) -> bool:
    """Write the attempt's outcome; False when it may no longer (cancelled, taken over)."""
    return transition(
        run_id, outcome.status, actor=worker, expect={RunStatus.RUNNING}, attempt=attempt,
        reason=outcome.error, accuracy=outcome.accuracy, value=outcome.value,
        exit_code=outcome.exit_code,
        error=outcome.error, duration_s=outcome.duration_s, finished_at=utcnow(), child_pgid=None,
        script_sha256=outcome.script_sha256,
    )


def record_and_aggregate(run_id: int, experiment_id: int, attempt: int, worker: str,
                         outcome: Outcome, inline: bool = True) -> bool:
    """Write the outcome and, `inline`, in the same transaction, the experiment's status and
    best and its model's best: one transaction and no aggregate message for the usual end of
    a run."""
    with write_transaction():
        recorded = record_outcome(run_id, attempt, worker, outcome)
        if recorded and inline:
            aggregate_in_transaction(experiment_id)
    return recorded


def requeue_attempt(run_id: int, attempt: int, worker: str) -> bool:
    """The worker is stopping mid-run: the run waits for the next worker."""
    return transition(run_id, RunStatus.QUEUED, actor=worker, expect={RunStatus.RUNNING},
                      attempt=attempt, reason="worker stopped mid-run; queued again",
                      heartbeat_at=None, child_pgid=None, nudged_at=utcnow())
