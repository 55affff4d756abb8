"""The colour scale of an experiment's objective: better is always the yellow end.

Accuracy keeps its natural 0..1; any other metric spans the experiment's configuration means.
A minimised metric is flipped, so the scale reads worst → best, left to right, either way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.sweeps.statistics import MAXIMIZE

# viridis, sampled: readable for colour-blind eyes and in greyscale
STOPS = [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)),
         (0.75, (94, 201, 98)), (1.0, (253, 231, 37))]


def colour(share: float | None) -> str:
    """The colour of a share in [0, 1] (clamped; unknown is 0)."""
    value = min(1.0, max(0.0, share or 0.0))
    for (low, low_rgb), (high, high_rgb) in zip(STOPS, STOPS[1:], strict=False):
        if value <= high:
            part = (value - low) / (high - low)
            rgb = [round(a + (b - a) * part) for a, b in zip(low_rgb, high_rgb, strict=True)]
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#{:02x}{:02x}{:02x}".format(*STOPS[-1][1])


def legend_stops() -> list[tuple[int, str]]:
    return [(round(offset * 100), colour(offset)) for offset, _ in STOPS]


def significant(value: float, digits: int) -> str:
    """`value` to so many significant digits, without float noise or a padded exponent
    ("0.002876", "1e-5", "2500")."""
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def param_text(value: Any) -> str:
    """A parameter's value for people: a number to four significant digits (a range's draw such
    as 0.0028760196660332984 reads 0.002876; the exact value stays in the JSON and a title), a
    boolean as its JSON (what a script gets: `true`), a string as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return significant(value, 4)
    return str(value)


def number(value: float | None) -> str:
    """A metric's value for people: three decimals, or four significant digits when large."""
    if value is None:
        return "—"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"


def mean_ci(mean: float, ci95: list[float] | None) -> str:
    """A mean, ± the half-width of its 95% interval when it has one: the one way the pages
    write an interval (the t interval is symmetric; for a loss its low end may be below 0)."""
    if not ci95:
        return number(mean)
    low, high = ci95
    return f"{number(mean)} ± {number((high - low) / 2)}"


@dataclass(frozen=True)
class Scale:
    metric: str = "accuracy"
    direction: str = MAXIMIZE
    low: float = 0.0
    high: float = 1.0

    @property
    def minimised(self) -> bool:
        return self.direction != MAXIMIZE

    def score(self, value: float | None) -> float:
        """Where a value sits on the colour map: 0 the worst end, 1 the best."""
        if value is None:
            return 0.0
        if self.high <= self.low:
            return 1.0
        share = min(1.0, max(0.0, (value - self.low) / (self.high - self.low)))
        return 1.0 - share if self.minimised else share

    def ticks(self) -> list[str]:
        """The legend's three labels, left (worst) to right (best)."""
        worst, best = (self.high, self.low) if self.minimised else (self.low, self.high)
        return [significant(v, 4) for v in (worst, (worst + best) / 2, best)]


def scale_of(experiment: dict[str, Any], means: list[float] | None = None) -> Scale:
    """The scale over the configurations' means: those of the experiment's view, or `means`
    (a large experiment's view lists only its best configurations)."""
    metric = experiment["objective"]["metric"]
    direction = experiment["objective"]["direction"]
    if metric == "accuracy":
        return Scale(metric, direction)
    if means is None:
        means = [config["mean"] for config in experiment.get("configurations") or []]
    if not means:
        return Scale(metric, direction)
    return Scale(metric, direction, min(means), max(means))
