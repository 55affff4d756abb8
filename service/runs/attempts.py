"""How a training attempt ends, written the same way whether its worker is local or remote."""

from __future__ import annotations

from service.contract import Outcome, RunStatus
from service.core.timeutil import utcnow
from service.runs.state import transition


def record_outcome(run_id: int, attempt: int, worker: str, outcome: Outcome) -> bool:
    """Write the attempt's outcome; False when it may no longer (cancelled, taken over)."""
    return transition(
        run_id, outcome.status, actor=worker, expect={RunStatus.RUNNING}, attempt=attempt,
        reason=outcome.error, accuracy=outcome.accuracy, value=outcome.value,
        exit_code=outcome.exit_code,
        error=outcome.error, duration_s=outcome.duration_s, finished_at=utcnow(), child_pgid=None,
        script_sha256=outcome.script_sha256,
    )


def requeue_attempt(run_id: int, attempt: int, worker: str) -> bool:
    """The worker is stopping mid-run: the run waits for the next worker."""
    return transition(run_id, RunStatus.QUEUED, actor=worker, expect={RunStatus.RUNNING},
                      attempt=attempt, reason="worker stopped mid-run; queued again",
                      heartbeat_at=None, child_pgid=None, nudged_at=utcnow())
