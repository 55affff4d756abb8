"""Asking Optuna for configurations (ask-and-tell). The database is the study: each time, a
fresh in-memory study is told every trial of the experiment so far, then asked for more. So a
restart loses nothing, and any process with the database (a worker's aggregate, the API) can ask.

A trial is one configuration; with repeats its value is the mean of its seeds' values. Trials
still running are told as running: TPE's constant liar then keeps parallel asks apart.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.contract import TPE
from service.sweeps.grid import Params, config_key
from service.sweeps.space import distributions, finite_values


@dataclass
class TrialRecord:
    """What the database knows of one trial: its parameters and its runs' outcomes."""

    params: Params
    values: list[float] = field(default_factory=list)  # of its succeeded runs
    active: int = 0  # runs queued or running
    pruned_curve: dict[int, float] | None = None  # a pruned run's points

    @property
    def state(self) -> str:
        """Its Optuna trial state's name."""
        if self.active:
            return "RUNNING"
        if self.values:
            return "COMPLETE"
        return "PRUNED" if self.pruned_curve is not None else "FAIL"


def quiet_optuna() -> Any:
    """Optuna, imported when a search or a pruner first needs it (it costs the process
    ~60 MB), its per-trial log lines off."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)  # a line per trial would flood the logs
    return optuna


def _sampler(search: dict, told: int) -> Any:
    # Seeded by the search's seed and how many trials came before: the same history gives the
    # same next configuration, so an experiment can be repeated.
    seed = search["seed"] + told
    samplers = quiet_optuna().samplers
    if search["strategy"] == TPE:
        return samplers.TPESampler(seed=seed, constant_liar=True)
    return samplers.RandomSampler(seed=seed)


def ask(search: dict, space: dict, direction: str, history: list[TrialRecord],
        count: int) -> list[Params]:
    """`count` new configurations, given every trial so far."""
    optuna = quiet_optuna()
    dists = distributions(space)
    study = optuna.create_study(direction=direction, sampler=_sampler(search, len(history)))
    for record in history:
        state = optuna.trial.TrialState[record.state]
        value = sum(record.values) / len(record.values) if record.state == "COMPLETE" else None
        study.add_trial(optuna.trial.create_trial(
            state=state, params=record.params, distributions=dists, value=value,
            intermediate_values=record.pruned_curve))
    # in the space's order, which is the order a script gets them in
    return [{name: trial.params[name] for name in space}
            for trial in (study.ask(dists) for _ in range(count))]


def _drawn_from_lists(values: dict[str, Sequence[Any]], count: int,
                      seed: int) -> list[Params]:
    """`count` distinct points of a finite space, uniformly, each index of the space's
    product decoded into its values (the space is never laid out whole)."""
    sizes = [len(choices) for choices in values.values()]
    points = []
    for index in random.Random(seed).sample(range(math.prod(sizes)), count):
        picked: list[Any] = []
        for size in reversed(sizes):  # the last parameter varies fastest
            index, position = divmod(index, size)
            picked.append(position)
        points.append({name: choices[position] for (name, choices), position
                       in zip(values.items(), reversed(picked), strict=True)})
    return points


def _distinct_random(search: dict, space: dict, direction: str, count: int) -> list[Params]:
    """Optuna's random draws, a configuration drawn before drawn again: with a range in the
    space a repeat is rare (the space is large or endless), so few draws are wasted."""
    drawn: dict[str, Params] = {}
    for _ in range(100):
        for point in ask(search, space, direction, [], count):
            drawn.setdefault(config_key(point), point)
            if len(drawn) == count:
                return list(drawn.values())
        search = {**search, "seed": search["seed"] + 1}
    raise RuntimeError(f"{count} distinct configurations were not found in 100 tries")


def first_configurations(search: dict, space: dict, direction: str) -> list[Params]:
    """A random search's every configuration at once, none twice; a TPE search's first
    `parallel`. A random search over lists only (or one that would take most of a finite
    space) draws without replacement from the space's points; with ranges, from Optuna's
    random sampler, repeats drawn again."""
    if search["strategy"] == TPE:
        return ask(search, space, direction, [], min(search["parallel"], search["runs"]))
    values = finite_values(space)
    all_lists = all(isinstance(value, list) for value in space.values())
    if values is not None and (all_lists or 2 * search["runs"] > math.prod(
            len(v) for v in values.values())):
        return _drawn_from_lists(values, search["runs"], search["seed"])
    return _distinct_random(search, space, direction, search["runs"])
