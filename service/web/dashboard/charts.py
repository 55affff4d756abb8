"""Charts as geometry: scales, ticks, polylines and dots in SVG pixels, from the API's JSON and
the learning curves. Pure functions; the templates (_charts.html) only draw what they are given.

- a run's learning curve, with the point where the pruner stopped it;
- every run's curve of an experiment overlaid: pruned runs grey and thin, the best thick;
- for a random or TPE search, the best value so far over the runs in the order they finished
  (the objective against each parameter is in marginals.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from service.sweeps.statistics import MAXIMIZE
from service.web.dashboard.scale import number, significant

# Pixels kept around the plot for the tick labels and the axis titles.
LEFT, RIGHT, TOP, BOTTOM = 58, 24, 10, 40
X_TICK_PX, Y_TICK_PX = 50, 40  # about one tick per so many pixels: labels never crowd
LOG_SPAN = 100  # values spanning more than this factor get a log axis
MAX_POINTS = 400  # per curve: more only adds bytes to a page that is polled every 1.5 s
ENDED = ("succeeded", "failed", "pruned")  # runs that spent budget, for the history


@dataclass(frozen=True)
class Style:
    colour: str
    width: float


# The accent is the CSS's --accent; grey for pruned is lighter than the neutral of the others.
STYLES = {"best": Style("#0b5cad", 3.0), "other": Style("#6e7781", 1.25),
          "pruned": Style("#afb8c1", 1.0)}
DRAW_ORDER = {"pruned": 0, "other": 1, "best": 2}  # the best on top of everything


@dataclass(frozen=True)
class Tick:
    at: float  # pixel along its axis
    text: str


def tick_text(value: float) -> str:
    """A tick's label: short, with no float noise ("0.6", "1e-4", "2500")."""
    return significant(value, 6 if 1e-4 <= abs(value) < 1e6 else 4)


def nice_step(span: float, count: int = 5) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `count` intervals."""
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if raw <= m * power * (1 + 1e-9))


@dataclass(frozen=True)
class Axis:
    """A value range drawn between two pixels; `start` is the low end (the bottom for y)."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False
    step: float = 0.0  # linear: the tick step
    labels: tuple[str, ...] = ()  # a categorical axis: category n is drawn at value n

    @classmethod
    def categories(cls, labels: list[str], start: float, end: float) -> Axis:
        """Evenly spaced categories, half a step of room at each end."""
        return cls(-0.5, len(labels) - 0.5, start, end, step=1.0, labels=tuple(labels))

    def share(self, value: float) -> float:
        if self.log:
            return (math.log10(value) - math.log10(self.low)) / (
                math.log10(self.high) - math.log10(self.low))
        return (value - self.low) / (self.high - self.low)

    def at(self, value: float) -> float:
        return round(self.start + self.share(value) * (self.end - self.start), 1)

    def tick_values(self) -> list[float]:
        if self.log:
            low_power, high_power = round(math.log10(self.low)), round(math.log10(self.high))
            every = max(1, math.ceil((high_power - low_power) / 6))  # at most about 7 labels
            return [10.0 ** e for e in range(low_power, high_power + 1, every)]
        first = math.ceil(self.low / self.step - 1e-9) * self.step
        count = math.floor((self.high - first) / self.step + 1e-9)
        values = [round(first + n * self.step, 12) for n in range(count + 1)]
        # an axis that starts where its values do (a count of runs from 1) labels its start
        # unless a round tick is close to it
        if not values or values[0] - self.low >= self.step / 2:
            values.insert(0, self.low)
        return values

    def ticks(self) -> list[Tick]:
        if self.labels:
            return [Tick(self.at(n), label) for n, label in enumerate(self.labels)]
        return [Tick(self.at(value), tick_text(value)) for value in self.tick_values()]


def tick_count(start: float, end: float, per_tick: float) -> int:
    return max(2, min(6, round(abs(end - start) / per_tick)))


def linear_axis(values: list[float], start: float, end: float, whole: bool = False,
                per_tick: float = X_TICK_PX) -> Axis:
    """From the values' range widened to round ticks (a single value gets room around it);
    `whole`: ticks on whole numbers only (counts)."""
    low, high = min(values), max(values)
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = nice_step(high - low, tick_count(start, end, per_tick))
    step = max(1.0, step) if whole else step
    return Axis(math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step,
                start, end, step=step)


def count_axis(count: int, start: float, end: float) -> Axis:
    """1 to `count` (runs finished) with whole ticks, ending at `count`: not widened to a
    round number, which drew an axis to 20 for 16 runs."""
    if count <= 1:
        return Axis(0.0, 2.0, start, end, step=1.0)
    step = max(1.0, nice_step(count - 1, tick_count(start, end, X_TICK_PX)))
    return Axis(1.0, float(count), start, end, step=step)


def log_axis(values: list[float], start: float, end: float) -> Axis:
    """From the decade below the smallest value to the decade above the largest."""
    first = math.floor(math.log10(min(values)) + 1e-9)
    last = math.ceil(math.log10(max(values)) - 1e-9)
    return Axis(10.0 ** first, 10.0 ** max(last, first + 1), start, end, log=True)


def make_axis(values: list[float], start: float, end: float, log: bool = False,
              whole: bool = False, per_tick: float = X_TICK_PX) -> Axis:
    if log and min(values) > 0:
        return log_axis(values, start, end)
    return linear_axis(values, start, end, whole, per_tick)


@dataclass(frozen=True)
class Line:
    points: str  # "x,y x,y ...", for <polyline points>
    kind: str  # best | other | pruned | history
    colour: str
    width: float
    title: str
    run_id: int | None = None


# a dot's fill and radius: the values, the best run's, and where a run was pruned (hollow)
DOTS = {"value": Style("#6e7781", 3.5), "best": Style("#0b5cad", 6.0),
        "pruned-at": Style("#ffffff", 5.0), "pruned-end": Style("#ffffff", 3.0)}


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    kind: str  # value | best | pruned-at (a run's page) | pruned-end (the overlay)
    title: str
    run_id: int | None = None

    @property
    def fill(self) -> str:
        return DOTS[self.kind].colour

    @property
    def r(self) -> float:
        return DOTS[self.kind].width


@dataclass
class Chart:
    width: int
    height: int
    x: Axis
    y: Axis
    x_title: str
    y_title: str
    label: str  # what the chart shows, for screen readers
    lines: list[Line] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    name: str = ""  # a data-chart attribute, to find it in tests and scripts

    @property
    def left(self) -> float:
        return self.x.start

    @property
    def right(self) -> float:
        return self.x.end

    @property
    def top(self) -> float:
        return self.y.end

    @property
    def bottom(self) -> float:
        return self.y.start


def frame(width: int, height: int, xs: list[float], ys: list[float],
          x_log: bool = False, x_whole: bool = False) -> tuple[Axis, Axis]:
    """The two axes of a chart of this size over these values."""
    x = make_axis(xs, LEFT, width - RIGHT, x_log, x_whole)
    y = make_axis(ys, height - BOTTOM, TOP, per_tick=Y_TICK_PX)
    return x, y


def polyline(pairs: list[tuple[float, float]], x: Axis, y: Axis) -> str:
    return " ".join(f"{x.at(a)},{y.at(b)}" for a, b in pairs)


def thin(pairs: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most about `limit` points, evenly spread, the first and the last always kept."""
    if len(pairs) <= limit:
        return pairs
    every = math.ceil(len(pairs) / limit)
    kept = pairs[::every]
    return kept if kept[-1] == pairs[-1] else [*kept, pairs[-1]]


def pruned_point(run: dict[str, Any]) -> tuple[float, float] | None:
    pruned = run.get("pruned_at")
    if run["status"] != "pruned" or not pruned or pruned.get("value") is None:
        return None
    return float(pruned["step"]), float(pruned["value"])


def pruned_text(run: dict[str, Any]) -> str:
    point = pruned_point(run)
    return f"pruned at step {point[0]:g} (value {number(point[1])})" if point else "pruned"


def run_curve_chart(run: dict[str, Any], curve: list[dict[str, Any]], metric: str,
                    width: int = 600, height: int = 260) -> Chart | None:
    """One run's curve (step across, the objective up), its pruning point marked."""
    pairs = thin([(float(p["step"]), float(p["value"])) for p in curve])
    stop = pruned_point(run)
    if not pairs:
        return None
    extra = [stop] if stop else []
    x, y = frame(width, height, [a for a, _ in pairs + extra], [b for _, b in pairs + extra],
                 x_whole=True)
    chart = Chart(width, height, x, y, "step", metric,
                  f"{metric} at each step of run {run['id']}", name="run-curve")
    chart.lines.append(Line(polyline(pairs, x, y), "run", STYLES["best"].colour, 2.0,
                            f"run {run['id']}: {metric} by step", run["id"]))
    if stop:
        chart.dots.append(Dot(x.at(stop[0]), y.at(stop[1]), "pruned-at", pruned_text(run),
                              run["id"]))
    return chart


def curve_kind(run: dict[str, Any], best_id: int | None) -> str:
    if run["id"] == best_id:
        return "best"
    return "pruned" if run["status"] == "pruned" else "other"


def overlay_chart(runs: list[dict[str, Any]], curves: dict[int, dict[int, float]],
                  best_id: int | None, metric: str, width: int = 760,
                  height: int = 300) -> Chart | None:
    """Every run's curve in one chart: pruned runs grey and thin, the best run thick in the
    accent colour, the others neutral. None when no run has a point."""
    drawn = sorted((run for run in runs if curves.get(run["id"])),
                   key=lambda run: (DRAW_ORDER[curve_kind(run, best_id)], run["id"]))
    if not drawn:
        return None
    stops = {run["id"]: stop for run in drawn if (stop := pruned_point(run))}
    every = [(float(s), float(v)) for run in drawn for s, v in curves[run["id"]].items()]
    every += list(stops.values())
    x, y = frame(width, height, [a for a, _ in every], [b for _, b in every], x_whole=True)
    chart = Chart(width, height, x, y, "step", metric,
                  f"{metric} by step of every run with a curve", name="overlay")
    for run in drawn:
        kind = curve_kind(run, best_id)
        style = STYLES[kind]
        pairs = thin(sorted((float(s), float(v)) for s, v in curves[run["id"]].items()))
        note = {"best": " (best)", "pruned": f" ({pruned_text(run)})", "other": ""}[kind]
        chart.lines.append(Line(polyline(pairs, x, y), kind, style.colour, style.width,
                                f"run {run['id']}{note}", run["id"]))
        if kind == "pruned" and run["id"] in stops:
            a, b = stops[run["id"]]
            chart.dots.append(Dot(x.at(a), y.at(b), "pruned-end", f"run {run['id']}{note}",
                                  run["id"]))
    return chart


LEGEND_TEXT = {"best": "best run", "other": "other runs", "pruned": "pruned (stopped early)"}


def legend(chart: Chart) -> list[tuple[Style, str]]:
    """The overlay's legend: each kind of line it draws, best first, the best named."""
    kinds = {line.kind: line for line in chart.lines}
    text = {**LEGEND_TEXT, "best": f"best run (run {kinds['best'].run_id})"} \
        if "best" in kinds else LEGEND_TEXT
    return [(STYLES[kind], text[kind]) for kind in ("best", "other", "pruned") if kind in kinds]


def finishing_order(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that spent budget (succeeded, failed, pruned), in the order they finished."""
    ended = [run for run in runs if run["status"] in ENDED]
    return sorted(ended, key=lambda run: (run.get("finished_at") or "~", run["id"]))


def best_so_far(runs: list[dict[str, Any]], metric: str,
                direction: str) -> list[tuple[int, float]]:
    """(n, best value among the first n runs to finish) from the first run that succeeded;
    best is the largest when maximising, the smallest when minimising."""
    better = max if direction == MAXIMIZE else min
    best: float | None = None
    history = []
    for n, run in enumerate(finishing_order(runs), start=1):
        value = run["value"] if run["status"] == "succeeded" else None
        if value is not None:
            best = value if best is None else better(best, value)
        if best is not None:
            history.append((n, best))
    return history


def staircase(history: list[tuple[int, float]]) -> list[tuple[float, float]]:
    """A best-so-far line holds its value until the next run improves it."""
    pairs: list[tuple[float, float]] = []
    for n, value in history:
        if pairs and pairs[-1][1] != value:
            pairs.append((float(n), pairs[-1][1]))
        pairs.append((float(n), value))
    return pairs


def history_chart(runs: list[dict[str, Any]], metric: str, direction: str,
                  best_id: int | None, width: int = 600, height: int = 260) -> Chart | None:
    """Each succeeded run's value at its place in the finishing order, and the best so far."""
    history = best_so_far(runs, metric, direction)
    if not history:
        return None
    order = finishing_order(runs)
    scored = [(n, run, value) for n, run in enumerate(order, start=1)
              if run["status"] == "succeeded"
              and (value := run["value"]) is not None]
    x = count_axis(len(order), LEFT, width - RIGHT)
    y = make_axis([v for _, _, v in scored], height - BOTTOM, TOP, per_tick=Y_TICK_PX)
    chart = Chart(width, height, x, y, "runs finished", f"{metric}, best so far",
                  f"best {metric} so far after each run finished", name="history")
    for n, run, value in scored:
        kind = "best" if run["id"] == best_id else "value"
        chart.dots.append(Dot(x.at(n), y.at(value), kind,
                              f"run {run['id']} (finished {n}.): {metric} {number(value)}",
                              run["id"]))
    best = STYLES["best"]
    chart.lines.append(Line(polyline(staircase(history), x, y), "history", best.colour,
                            2.0, f"best {metric} so far"))
    return chart
