"""Plain types the API, the workers and the scripts' supervisor share: a run's and an
experiment's states, a search's strategies, a claim, what a worker needs to train a run (its
spec) and how an attempt ended (its outcome). The standard library only: a remote worker
imports this without the database."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # stopped early: its curve said it could not win (it did nothing wrong)


TERMINAL_RUN_STATES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                                 RunStatus.PRUNED})
ACTIVE_RUN_STATES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
ACTIVE_RUN_VALUES = [state.value for state in ACTIVE_RUN_STATES]  # for SQL's IN
# How an experiment searches (its `search` column; None is the grid).
GRID, RANDOM, TPE = "grid", "random", "tpe"


class ExperimentStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # this worker runs it now
    GONE = "gone"  # no such run (its model was deleted)
    DONE = "done"  # already in a final state: nothing to do
    BUSY = "busy"  # another live worker holds it
    EXHAUSTED = "exhausted"  # its workers died too often: failed as "worker lost"
    NOT_STARTED = "not_started"  # its experiment was never started: a stale message


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    attempt: int = 0
    previous_worker: str | None = None
    previous_pgid: int | None = None
    spec: dict[str, Any] | None = None  # what a worker needs to train it (None: no such run)


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to know of a run to train it."""

    run_id: int
    experiment_id: int
    params: dict[str, Any]  # {name: JSON scalar}, in the order the script gets them
    timeout_s: float
    metric: str = "accuracy"  # the experiment's objective
    seed: int = 0
    aggregate_later: bool = False  # by the aggregate actor, not with the result (runstate)
    early_stopping: bool = False  # its experiment prunes: its curve is looked at as it grows
    # Its experiment's code version: {"version", "train", "test", "requirements"} (entry
    # points and requirements file relative to the tree); None: the deployment's scripts.
    code: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    accuracy: float | None = None
    value: float | None = None  # the objective's metric (the accuracy unless it names another)
    exit_code: int | None = None
    error: str | None = None
    duration_s: float | None = None
    stopped: bool = False  # cancelled or taken over: nobody should record this attempt
    script_sha256: str | None = None  # of the train script that ran (what reuse matches on)
