"""Watching an experiment: a live view in a terminal (or Jupyter) — a bar of the runs by
state, runs per minute and time left, the best so far with its parameters, the last
failures' reasons — or, without one, a plain line per change. It returns when the experiment
ends; Ctrl-C (KeyboardInterrupt) stops the watching only, never the sweep."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from sweeplab_client.models import Best, Experiment, Run

if TYPE_CHECKING:
    from sweeplab_client.client import Client

STATES = ("succeeded", "failed", "pruned", "cancelled", "running", "queued")
ENDED = ("succeeded", "failed", "pruned", "cancelled")
COLOURS = {"succeeded": "green", "failed": "red", "pruned": "magenta", "cancelled": "bright_black",
           "running": "yellow", "queued": "blue"}
BAR_WIDTH = 40
FAILURES_SHOWN = 3


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in params.items())


def best_text(best: Best | None) -> str:
    if best is None:
        return "no best yet"
    metric = best.metric or "accuracy"
    value = best.value if best.value is not None else best.accuracy
    shown = "—" if value is None else f"{value:.4g}"
    return f"{metric}={shown} (run {best.run_id}: {params_text(best.params)})"


def reason(run: Run) -> str:
    """The last line of the run's error: usually the exception or the exit code."""
    lines = [line.strip() for line in (run.error or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"exit code {run.exit_code}"


@dataclass
class Rate:
    """Runs ended per minute, as seen since watching began."""

    started: float = field(default_factory=time.monotonic)
    ended_at_start: int | None = None

    def per_minute(self, ended: int) -> float | None:
        if self.ended_at_start is None:
            self.ended_at_start = ended
        elapsed = time.monotonic() - self.started
        gained = ended - self.ended_at_start
        return gained / elapsed * 60 if gained > 0 and elapsed > 0 else None


def _ended(experiment: Experiment) -> tuple[int, int]:
    counts = experiment.counts
    return sum(counts.get(state, 0) for state in ENDED), sum(counts.values())


def _eta(rate: float | None, left: int) -> str:
    if not rate or left <= 0:
        return "—"
    seconds = round(left / rate * 60)
    return f"{seconds // 60}:{seconds % 60:02d}"


def failures(experiment: Experiment) -> list[Run]:
    failed = [run for run in experiment.runs if run.status == "failed"]
    return sorted(failed, key=lambda run: (run.finished_at or "", run.id))[-FAILURES_SHOWN:]


def _bar(experiment: Experiment, total: int) -> Text:
    bar = Text()
    for state in STATES:
        count = experiment.counts.get(state, 0)
        width = round(count / total * BAR_WIDTH) if total else 0
        bar.append("█" * width, style=COLOURS[state])
    return bar


def render(experiment: Experiment, rate: float | None) -> Group:
    """The live view of one poll."""
    ended, total = _ended(experiment)
    title = Text(f"experiment {experiment.id} · {experiment.status}", style="bold")
    bar = _bar(experiment, total)
    bar.append(f"  {ended}/{total}")
    states = Text(" · ").join(Text(f"{state} {experiment.counts.get(state, 0)}",
                                   style=COLOURS[state]) for state in STATES)
    speed = "—" if rate is None else f"{rate:.1f}"
    pace = Text(f"{speed} runs/min · time left {_eta(rate, total - ended)}")
    lines = [title, bar, states, pace, Text(f"best so far: {best_text(experiment.best)}")]
    shown = failures(experiment)
    if shown:
        lines.append(Text("last failures:", style="red"))
        lines += [Text(f"  run {run.id} ({params_text(run.params)}): {reason(run)}")
                  for run in shown]
    return Group(*lines)


def summary(experiment: Experiment, rate: float | None) -> str:
    """The plain line of one poll."""
    ended, total = _ended(experiment)
    counts = ", ".join(f"{state} {experiment.counts.get(state, 0)}" for state in STATES
                       if experiment.counts.get(state, 0))
    speed = "" if rate is None else f" · {rate:.1f} runs/min, {_eta(rate, total - ended)} left"
    return (f"experiment {experiment.id} {experiment.status}: {ended}/{total} ended "
            f"({counts}){speed} · best {best_text(experiment.best)}")


def final_line(experiment: Experiment) -> str:
    if experiment.best is not None:
        return f"experiment {experiment.id} {experiment.status}: best {best_text(experiment.best)}"
    return f"experiment {experiment.id} {experiment.status}: no run succeeded"


def _poll(client: Client, experiment_id: int, interval: float, show: Any) -> Experiment:
    rate = Rate()
    while True:
        experiment = client.experiments.get(experiment_id)
        show(experiment, rate.per_minute(_ended(experiment)[0]))
        if experiment.ended:
            return experiment
        time.sleep(interval)


def _plain(console: Console) -> Any:
    seen: dict[str, Any] = {"line": None, "failed": set()}

    def show(experiment: Experiment, rate: float | None) -> None:
        line = summary(experiment, None)  # the rate alone changing is no change
        if line != seen["line"]:
            console.print(summary(experiment, rate), highlight=False, soft_wrap=True)
            seen["line"] = line
        for run in experiment.runs:
            if run.status == "failed" and run.id not in seen["failed"]:
                seen["failed"].add(run.id)
                console.print(f"run {run.id} failed ({params_text(run.params)}): {reason(run)}",
                              highlight=False, soft_wrap=True)
    return show


def watch(client: Client, experiment_id: int, live: bool = True, plain: bool = True,
          interval: float = 1.0, console: Console | None = None) -> Experiment:
    """Poll the experiment until it ends; the ended experiment. `live`: the live view where
    the output is a terminal or Jupyter; `plain`: lines elsewhere; neither: quiet."""
    console = console or Console(highlight=False)
    if live and (console.is_terminal or console.is_jupyter):
        with Live(console=console, refresh_per_second=4, transient=False) as view:
            def show(experiment: Experiment, rate: float | None) -> None:
                view.update(render(experiment, rate))
            done = _poll(client, experiment_id, interval, show)
        console.print(final_line(done), highlight=False)
        return done
    if live or plain:
        done = _poll(client, experiment_id, interval, _plain(console))
        console.print(final_line(done), highlight=False, soft_wrap=True)
        return done
    return _poll(client, experiment_id, interval, lambda *_: None)
