"""`sweeplab sweep`, `watch`, `runs`, `logs`, `best`, `cancel`, `retry`, `workers`,
`predict`."""

from __future__ import annotations

import time
from typing import Any

import click

from sweeplab_client.cli_support import State, pass_state
from sweeplab_client.models import Experiment, Run
from sweeplab_client.output import console, emit_json, errors, json_option, pairs, table
from sweeplab_client.sweepspec import experiment_body, load_file, parse_grid
from sweeplab_client.watch import params_text, reason, watch

RUN_ENDED = ("succeeded", "failed", "cancelled", "pruned")
INTERRUPTED = 130


def _outcome(experiment: Experiment) -> int:
    """0 when the experiment has a best, 1 when it ended without one."""
    return 0 if experiment.best is not None else 1


def _watch(state: State, experiment_id: int, as_json: bool, interval: float) -> int:
    try:
        done = watch(state.client, experiment_id, live=not as_json, plain=not as_json,
                     interval=interval, console=console())
    except KeyboardInterrupt:  # stops the watching only: the sweep goes on
        errors().print(f"stopped watching; experiment {experiment_id} keeps running "
                       f"(sweeplab watch {experiment_id})")
        return INTERRUPTED
    if as_json:
        emit_json(done.raw)
    return _outcome(done)


@click.command()
@click.argument("model")
@click.option("--grid", "grids", multiple=True, metavar="NAME=V1,V2,...",
              help="Values to try for a parameter (repeatable); numbers, true/false, text.")
@click.option("--file", "sweep_file", type=click.Path(exists=True, dir_okay=False),
              help="A sweep.yaml: the fields of the API's experiment body.")
@click.option("--repeats", type=click.IntRange(1), help="Runs per configuration (seeds).")
@click.option("--search", type=click.Choice(["grid", "random", "tpe"]), help="How to choose.")
@click.option("--runs", type=click.IntRange(1), help="Configurations to try (random, tpe).")
@click.option("--seed", type=click.IntRange(0), help="The search's seed.")
@click.option("--metric", help="The objective: a key the script prints (default accuracy).")
@click.option("--minimize", is_flag=True, help="Minimise the metric (default: maximise).")
@click.option("--timeout", "timeout_s", type=float, help="Seconds each run may take.")
@click.option("--watch", "then_watch", is_flag=True, help="Watch it until it ends.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@json_option
@pass_state
def sweep(state: State, model: str, grids: tuple[str, ...], sweep_file: str | None,
          then_watch: bool, interval: float, as_json: bool, **options: Any) -> int:
    """Create and start an experiment on MODEL; prints its id and dashboard URL."""
    body = experiment_body(load_file(sweep_file) if sweep_file else None,
                           grid=parse_grid(grids), **options)
    found = state.client.models.find(model)
    created = state.client.models.sweep(found.id, body=body)
    url = state.client.dashboard_url(created.id)
    if as_json and not then_watch:
        emit_json(created.raw)
    elif not as_json:
        click.echo(f"experiment {created.id} ({sum(created.counts.values())} runs): {url}")
    return _watch(state, created.id, as_json, interval) if then_watch else 0


@click.command("watch")
@click.argument("experiment", type=int)
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@json_option
@pass_state
def watch_command(state: State, experiment: int, interval: float, as_json: bool) -> int:
    """Watch an experiment until it ends (Ctrl-C leaves it running). Exit 0 with a best."""
    return _watch(state, experiment, as_json, interval)


def _sort_key(sort: str, experiment: Experiment) -> Any:
    minimize = (experiment.objective or {}).get("direction") == "minimize"

    def by_value(run: Run) -> tuple[bool, float]:
        value = run.value if run.value is not None else run.accuracy
        return value is None, (value or 0.0) if minimize else -(value or 0.0)
    keys = {"value": by_value, "id": lambda run: run.id,
            "duration": lambda run: run.duration_s or 0.0, "status": lambda run: run.status}
    return keys[sort]


@click.command()
@click.argument("experiment", type=int)
@click.option("--sort", type=click.Choice(["id", "value", "duration", "status"]), default="id",
              show_default=True, help="value: best first, by the experiment's objective.")
@click.option("--status", type=click.Choice(list(RUN_ENDED) + ["queued", "running"]))
@json_option
@pass_state
def runs(state: State, experiment: int, sort: str, status: str | None, as_json: bool) -> int:
    """An experiment's runs, as a table."""
    found = state.client.experiments.get(experiment)
    shown = state.client.runs.list(experiment, status)
    shown.sort(key=_sort_key(sort, found))
    if as_json:
        emit_json({"runs": [run.raw for run in shown]})
        return 0
    names = list(dict.fromkeys(name for run in shown for name in run.params))
    metric = (found.objective or {}).get("metric", "accuracy")
    table(["run", "status", *names, "seed", metric, "duration_s", "error"],
          [(run.id, run.status, *(run.params.get(name) for name in names), run.seed,
            run.value if run.value is not None else run.accuracy, run.duration_s,
            reason(run) if run.status == "failed" else "") for run in shown])
    return 0


@click.command()
@click.argument("run", type=int)
@click.option("--follow", "-f", is_flag=True, help="Print what comes until the run ends.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@pass_state
def logs(state: State, run: int, follow: bool, interval: float) -> int:
    """What a run's script printed (stdout, then stderr). With --follow, exit 1 when the
    run failed."""
    printed = ""
    while True:
        ended = state.client.runs.get(run) if follow else None
        text = state.client.runs.logs(run)
        # the log is stdout then stderr: it grows at its end, except when stdout grows
        # after stderr began; then it is printed again whole
        click.echo(text[len(printed):] if text.startswith(printed) else "\n" + text, nl=False)
        printed = text
        if ended is None or ended.status in RUN_ENDED:
            if printed and not printed.endswith("\n"):
                click.echo()
            return 1 if ended is not None and ended.status == "failed" else 0
        time.sleep(interval)


@click.command()
@click.argument("model")
@json_option
@pass_state
def best(state: State, model: str, as_json: bool) -> int:
    """The model's best run: its parameters and value."""
    found = state.client.models.best(state.client.models.find(model).id)
    if as_json:
        emit_json(found.raw)
        return 0
    pairs({"run": found.run_id, "experiment": found.experiment_id,
           found.metric or "accuracy": found.value if found.value is not None
           else found.accuracy, "direction": found.direction, "seed": found.seed,
           "params": params_text(found.params)})
    return 0


def _after(verb: str, done: Experiment, as_json: bool) -> int:
    if as_json:
        emit_json(done.raw)
    else:
        counts = ", ".join(f"{state} {n}" for state, n in done.counts.items() if n)
        click.echo(f"experiment {done.id} {verb}: {done.status} ({counts})")
    return 0


@click.command()
@click.argument("experiment", type=int)
@json_option
@pass_state
def cancel(state: State, experiment: int, as_json: bool) -> int:
    """Cancel an experiment's queued and running runs."""
    return _after("cancelled", state.client.experiments.cancel(experiment), as_json)


@click.command()
@click.argument("experiment", type=int)
@json_option
@pass_state
def retry(state: State, experiment: int, as_json: bool) -> int:
    """Queue again the runs that failed or were cancelled."""
    return _after("retried", state.client.experiments.retry(experiment), as_json)


@click.command()
@json_option
@pass_state
def workers(state: State, as_json: bool) -> int:
    """The worker processes, alive, lost or stopped, and the runs they run."""
    found = state.client.workers()
    if as_json:
        emit_json({"workers": [worker.raw for worker in found]})
        return 0
    table(["name", "status", "remote", "threads", "gpus", "runs", "last seen"],
          [(w.name, w.status, "yes" if w.remote else "no", w.threads, ",".join(w.gpus) or "—",
            ",".join(map(str, w.runs)) or "—", w.last_seen_at) for w in found])
    return 0


@click.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@json_option
@pass_state
def predict(state: State, model: str, images: tuple[str, ...], as_json: bool) -> int:
    """Label images with the model's best run, in batches of the server's limit."""
    found = state.client.models.find(model)
    answers = state.client.models.predict(found.id, list(images))
    if as_json:
        emit_json({"predictions": [answer.raw for answer in answers]})
        return 0
    rows = zip(images, answers, strict=True)
    table(["image", "label", "confidence"],
          [(image, answer.label, None if answer.confidence is None
            else f"{answer.confidence:.4f}") for image, answer in rows])
    return 0


COMMANDS = [sweep, watch_command, runs, logs, best, cancel, retry, workers, predict]
