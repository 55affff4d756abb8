"""How an experiment searches: the grid (every combination), or random or TPE sampling from
Optuna over lists and ranges; and its early-stopping rule. Validation only: pure functions of
the request body, each mistake a 422 naming the field."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

from service.contract import GRID, RANDOM, TPE
from service.core.errors import Invalid
from service.sweeps.grid import (
    ASSIGNMENT_RULES,
    ValueRule,
    check_scalar,
    clean_values,
    grid_object,
    validate_grid,
)

STRATEGY_KEYS = {GRID: {"strategy"}, RANDOM: {"strategy", "runs", "seed"},
                 TPE: {"strategy", "runs", "parallel", "seed"}}
DEFAULT_PARALLEL = 4
RULES = ("median", "successive_halving")
MAX_SEED = 2**31 - 1


def _whole_in(raw: Any, field: str, low: int, high: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
        raise Invalid(f"{field} must be a whole number from {low} to {high}", field=field)
    return raw


def validate_search(raw: Any, max_runs: int) -> dict[str, Any]:
    """`{"strategy": "grid"}` (the default), `{"strategy": "random", "runs": N, "seed": S}` or
    `{"strategy": "tpe", "runs": N, "parallel": P, "seed": S}`; a seed left out is drawn now
    and kept, so the experiment can be run again with the same configurations."""
    if raw is None:
        return {"strategy": GRID}
    if not isinstance(raw, dict):
        raise Invalid("search must be an object with a strategy", field="search")
    strategy = raw.get("strategy", GRID)
    if not isinstance(strategy, str) or strategy not in STRATEGY_KEYS:
        raise Invalid(f"search.strategy {strategy!r} is unknown; use grid, random or tpe",
                      field="search.strategy")
    unknown = sorted(set(raw) - STRATEGY_KEYS[strategy])
    if unknown:
        raise Invalid(f"search has keys {unknown} a {strategy} search does not take; allowed: "
                      f"{sorted(STRATEGY_KEYS[strategy])}", field="search")
    if strategy == GRID:
        return {"strategy": GRID}
    if "runs" not in raw:
        raise Invalid(f"search.runs is required for a {strategy} search", field="search.runs")
    clean = {"strategy": strategy, "runs": _whole_in(raw["runs"], "search.runs", 1, max_runs)}
    if strategy == TPE:
        clean["parallel"] = _whole_in(raw.get("parallel", DEFAULT_PARALLEL), "search.parallel",
                                      1, 1000)
    seed = raw.get("seed")
    clean["seed"] = secrets.randbelow(MAX_SEED) if seed is None else _whole_in(
        seed, "search.seed", 0, MAX_SEED)
    return clean


def _range(name: str, raw: dict[str, Any], rule: ValueRule | None) -> dict[str, Any]:
    """`{"low", "high", "log"}`: whole numbers if both ends are (an integer parameter), else
    floats; the deployment's script's rules apply to i, j and k."""
    field = f"grid.{name}"
    unknown = sorted(set(raw) - {"low", "high", "log"})
    if unknown or "low" not in raw or "high" not in raw:
        raise Invalid(f"{field}: a range is {{\"low\": L, \"high\": H, \"log\": true|false}}, "
                      f"and a list of choices {{\"choices\": [...]}}", field=field)
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise Invalid(f"{field}.log must be true or false", field=f"{field}.log")
    low, high = (_number(raw[end], f"{field}.{end}", rule) for end in ("low", "high"))
    if log and low <= 0:
        raise Invalid(f"{field}: a log range cannot reach 0 or below (low is {low!r})",
                      field=f"{field}.low")
    if low >= high:
        raise Invalid(f"{field}: low ({low!r}) must be below high ({high!r})", field=field)
    if not (isinstance(low, int) and isinstance(high, int)):
        low, high = float(low), float(high)
    return {"low": low, "high": high, "log": log}


def _number(value: Any, field: str, rule: ValueRule | None) -> int | float:
    cleaned = (rule or check_scalar)(value, field)
    if isinstance(cleaned, bool) or not isinstance(cleaned, int | float):
        raise Invalid(f"{field}: {value!r} is not a number", field=field)
    return cleaned


def _dimension(name: str, value: Any, rules: dict[str, ValueRule]) -> Any:
    """A list (or `{"choices": [...]}`: the same) of values, or a range of numbers."""
    rule = rules.get(name)
    if isinstance(value, dict) and set(value) == {"choices"}:
        value = value["choices"]
    elif isinstance(value, dict):
        return _range(name, value, rule)
    return clean_values(value, f"grid.{name}", rule or check_scalar)


def validate_space(raw: Any, strategy: str, max_points: int,
                   defaults: dict[str, Any] | None = None,
                   rules: dict[str, ValueRule] | None = None) -> dict[str, Any]:
    """For a grid, lists (their product must fit the limit); for random and TPE, each
    parameter a list of values, `{"choices": [...]}` or a range `{"low", "high", "log"}`.
    `rules` check the values of the names they cover (the assignment's i, j, k by default)."""
    rules = ASSIGNMENT_RULES if rules is None else rules
    if strategy == GRID:
        if isinstance(raw, dict) and any(isinstance(v, dict) for v in raw.values()):
            raise Invalid("a grid search takes lists of values; ranges and choices need "
                          "search.strategy random or tpe", field="grid")
        return validate_grid(raw, max_points, defaults, rules)
    return {name: _dimension(name, value, rules)
            for name, value in grid_object(raw, defaults).items()}


def finite_values(space: dict[str, Any]) -> dict[str, Sequence[Any]] | None:
    """Each parameter's possible values when all are finitely many (lists, whole-number
    ranges); None when a range of floats makes the space endless."""
    values: dict[str, Sequence[Any]] = {}
    for name, value in space.items():
        if isinstance(value, list):
            values[name] = value
        elif isinstance(value["low"], float):
            return None
        else:
            values[name] = range(value["low"], value["high"] + 1)
    return values


def space_size(space: dict[str, Any]) -> int | None:
    """How many configurations a search space holds; None when it is endless."""
    values = finite_values(space)
    return None if values is None else math.prod(len(v) for v in values.values())


def check_run_count(search: dict[str, Any], space: dict[str, Any], repeats: int,
                    max_runs: int) -> None:
    """A random search draws each configuration at most once, so it cannot ask for more than
    its space holds; and the limit is on runs (configurations times seeds), not
    configurations."""
    if search["strategy"] == GRID:
        configurations = math.prod(len(values) for values in space.values())
    else:
        configurations = search["runs"]
    size = space_size(space)
    if search["strategy"] == RANDOM and size is not None and configurations > size:
        raise Invalid(f"search.runs is {configurations} but the search space holds only "
                      f"{size} configurations: a random search never draws one twice; ask for "
                      f"at most {size}", field="search.runs")
    runs = configurations * repeats
    if runs > max_runs:
        raise Invalid(f"this experiment would make {runs} runs ({configurations} "
                      f"configurations x {repeats} seeds); at most {max_runs} runs are allowed "
                      f"per experiment (SWEEPLAB_MAX_GRID_POINTS)",
                      field=_run_count_field(search, repeats))


def _run_count_field(search: dict[str, Any], repeats: int) -> str:
    if repeats > 1:
        return "repeats"
    return "grid" if search["strategy"] == GRID else "search.runs"


def distributions(space: dict[str, Any]) -> dict[str, Any]:
    """Optuna's distribution for each parameter of a random or TPE search."""
    from optuna.distributions import (  # imported when a search asks: Optuna costs ~60 MB
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    result: dict[str, Any] = {}
    for key, value in space.items():
        if isinstance(value, list):
            result[key] = CategoricalDistribution(value)
        elif isinstance(value["low"], float):
            result[key] = FloatDistribution(value["low"], value["high"], log=value["log"])
        else:
            result[key] = IntDistribution(value["low"], value["high"], log=value["log"])
    return result


def validate_early_stopping(raw: Any) -> dict[str, Any] | None:
    """`{"rule": "median" | "successive_halving", "min_step": M}`, or None (never)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"rule", "min_step"}:
        raise Invalid("early_stopping must be an object with keys rule and min_step",
                      field="early_stopping")
    if raw.get("rule") not in RULES:
        raise Invalid(f"early_stopping.rule must be one of {list(RULES)}",
                      field="early_stopping.rule")
    min_step = _whole_in(raw.get("min_step", 1), "early_stopping.min_step", 1, 10**9)
    return {"rule": raw["rule"], "min_step": min_step}


def validate_reuse(raw: Any) -> bool:
    if raw is None:
        return True
    if not isinstance(raw, bool):
        raise Invalid("reuse must be true or false", field="reuse")
    return raw
