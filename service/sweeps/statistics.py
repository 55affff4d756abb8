"""Configurations of an experiment: its grid points, each run once per seed, and their statistics.

With repeats, one run of a configuration is one sample of a noisy number; the best configuration
is chosen by its mean (not by its luckiest seed), reported with a 95% confidence interval, and
compared with the runner-up by Welch's t-test, which says whether the two are distinguishable
at all. Repeats that all gave the same value are no sample of noise: the script ignored its seed,
or the result cannot vary (a diverged model answering one class). Their interval has no width
and says nothing of certainty, and no test is made with them (a t statistic over no variance is
infinite: "p < 0.001" from three identical values a side). Pure functions of the succeeded runs:
the aggregate and the views both call them.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from service.core.errors import Invalid
from service.sweeps.grid import config_key

MAXIMIZE, MINIMIZE = "maximize", "minimize"
DIRECTIONS = (MAXIMIZE, MINIMIZE)


@dataclass
class Configuration:
    params: dict[str, Any]  # by name, in the grid's order
    values: list[float] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    # (n, mean, M2, low, high) kept in config_stat, instead of the values themselves
    stored: tuple[int, float, float, float | None, float | None] | None = None

    @property
    def n(self) -> int:
        return self.stored[0] if self.stored else len(self.values)

    @property
    def mean(self) -> float:
        return self.stored[1] if self.stored else sum(self.values) / self.n

    @property
    def std(self) -> float | None:
        """The sample standard deviation; None for a single run."""
        if self.n < 2:
            return None
        if self.stored:
            return math.sqrt(max(self.stored[2], 0.0) / (self.n - 1))
        return statistics.stdev(self.values)

    @property
    def no_variance(self) -> bool:
        """Two runs or more, every one with the same value."""
        if self.stored:
            return self.n > 1 and self.stored[3] == self.stored[4]
        return self.n > 1 and len(set(self.values)) == 1

    def ci95(self) -> tuple[float, float] | None:
        """The 95% confidence interval of the mean (Student's t); None below two runs."""
        std = self.std
        if std is None:
            return None
        half = _t_quantile(self.n - 1) * std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def best_run(self, direction: str) -> int:
        """The best-scoring run of this configuration (ties: the earlier run)."""
        sign = 1 if direction == MAXIMIZE else -1
        return max(zip(self.values, self.run_ids, strict=True),
                   key=lambda pair: (sign * pair[0], -pair[1]))[1]


@functools.cache
def _t_quantile(degrees_of_freedom: int) -> float:
    """Student's t at 97.5%: scipy takes ~0.1 ms a call, and the polled view asks per cell."""
    from scipy import stats  # only with repeats: scipy.stats costs the API ~70 MB and 1.5 s

    return float(stats.t.ppf(0.975, degrees_of_freedom))


def group(runs: list[tuple[int, dict[str, Any], float]]) -> list[Configuration]:
    """Succeeded runs as (id, parameters, value), grouped by their parameters."""
    configs: dict[str, Configuration] = {}
    for run_id, params, value in sorted(runs, key=lambda run: run[0]):
        config = configs.setdefault(config_key(params), Configuration(params))
        config.values.append(value)
        config.run_ids.append(run_id)
    return list(configs.values())


def ranked(configs: list[Configuration], direction: str) -> list[Configuration]:
    """Best first: by mean in the objective's direction, ties to the earlier first run."""
    sign = -1 if direction == MAXIMIZE else 1
    return sorted(configs, key=lambda c: (sign * c.mean, min(c.run_ids)))


def welch_p(best: Configuration, runner_up: Configuration) -> float | None:
    """Welch's t-test p-value of the two means; None when either side has fewer than two runs
    or no variance (see no_test_reason)."""
    if no_test_reason(best, runner_up):
        return None
    from scipy import stats  # only with repeats (see _t_quantile)

    if best.stored or runner_up.stored:
        return float(stats.ttest_ind_from_stats(best.mean, best.std, best.n, runner_up.mean,
                                                runner_up.std, runner_up.n,
                                                equal_var=False).pvalue)
    return float(stats.ttest_ind(best.values, runner_up.values, equal_var=False).pvalue)


def no_test_reason(best: Configuration, runner_up: Configuration) -> str | None:
    """Why the best and the runner-up cannot be tested, in a sentence; None when they can."""
    sides = (("the best", best), ("the runner-up", runner_up))
    few = [name for name, config in sides if config.n < 2]
    if few:
        return (f"no test: Welch's test needs two runs or more of each, and "
                f"{' and '.join(few)} {'have' if len(few) > 1 else 'has'} fewer")
    same = [name for name, config in sides if config.no_variance]
    if same:
        return (f"no test: every seed gave the same value for {' and '.join(same)}: does the "
                f"script use SWEEPLAB_SEED?")
    return None


def configuration_json(config: Configuration) -> dict[str, Any]:
    interval = config.ci95()
    return {"params": config.params,
            "n": config.n, "mean": config.mean, "std": config.std,
            "ci95": list(interval) if interval else None, "no_variance": config.no_variance,
            "run_ids": config.run_ids}


def comparison_json(order: list[Configuration]) -> dict[str, Any] | None:
    """Whether the best configuration is distinguishable from the runner-up; `note` says why
    no test was made."""
    if len(order) < 2:
        return None
    p_value = welch_p(order[0], order[1])
    return {"runner_up": configuration_json(order[1])["params"], "welch_p_value": p_value,
            "distinguishable": None if p_value is None else p_value < 0.05,
            "note": no_test_reason(order[0], order[1])}


MAX_REPEATS = 20
METRIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def validate_objective(raw: Any) -> tuple[str, str]:
    """`{"metric", "direction"}`; the metric defaults to accuracy, whose direction defaults to
    maximize. Any other metric must say its direction: maximising a loss by default would
    silently pick the worst run. 422 naming the field."""
    if raw is None:
        return "accuracy", MAXIMIZE
    if not isinstance(raw, dict) or set(raw) - {"metric", "direction"}:
        raise Invalid("objective must be an object with keys metric and direction",
                      field="objective")
    metric = raw.get("metric", "accuracy")
    if not isinstance(metric, str) or not 0 < len(metric) <= 100 or set(metric) - METRIC_CHARS:
        raise Invalid("objective.metric must be a key the script prints: letters, digits, "
                      "_ . - (at most 100)", field="objective.metric")
    if "direction" not in raw and metric != "accuracy":
        raise Invalid(f"objective.direction is required for the metric {metric!r}: say "
                      f"maximize or minimize (only accuracy defaults to maximize)",
                      field="objective.direction")
    direction = raw.get("direction", MAXIMIZE)
    if direction not in DIRECTIONS:
        raise Invalid("objective.direction must be maximize or minimize",
                      field="objective.direction")
    return metric, direction


def validate_repeats(raw: Any) -> int:
    if raw is None:
        return 1
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_REPEATS:
        raise Invalid(f"repeats must be a whole number from 1 to {MAX_REPEATS}",
                      field="repeats")
    return raw
