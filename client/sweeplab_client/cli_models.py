"""`sweeplab models`, `upload` and `code push`."""

from __future__ import annotations

import sys

import click

from sweeplab_client.cli_support import State, pass_state
from sweeplab_client.models import Model, UploadResult
from sweeplab_client.output import emit_json, json_option, pairs, table


def _best_cell(model: Model) -> str:
    if model.best is None:
        return "—"
    value = model.best.value if model.best.value is not None else model.best.accuracy
    return f"{model.best.metric or 'accuracy'} {value:.4g}" if value is not None else "—"


@click.group(invoke_without_command=True)
@json_option
@pass_state
@click.pass_context
def models(context: click.Context, state: State, as_json: bool) -> int:
    """List the models (create, show, delete: see below)."""
    if context.invoked_subcommand is not None:
        return 0
    found = state.client.models.list()
    if as_json:
        emit_json({"models": [model.raw for model in found]})
        return 0
    table(["id", "name", "images", "labels", "experiments", "best"],
          [(m.id, m.name, m.image_count, len(m.labels), m.experiment_count, _best_cell(m))
           for m in found])
    return 0


@models.command("create")
@click.argument("name")
@click.option("--description", help="What the model is for.")
@json_option
@pass_state
def create_model(state: State, name: str, description: str | None, as_json: bool) -> int:
    """Create a model; prints its id."""
    model = state.client.models.create(name, description)
    emit_json(model.raw) if as_json else click.echo(model.id)
    return 0


@models.command("show")
@click.argument("model")
@json_option
@pass_state
def show_model(state: State, model: str, as_json: bool) -> int:
    """One model (by id or name): its images per label, code and best run."""
    found = state.client.models.find(model)
    if as_json:
        emit_json(found.raw)
        return 0
    pairs({"id": found.id, "name": found.name, "created": found.created_at,
           "images": found.image_count, "unlabelled": found.unlabelled_count,
           "experiments": found.experiment_count, "code": found.code_version or "default",
           "best": _best_cell(found)})
    if found.best is not None:
        pairs({"best run": found.best.run_id,
               "best params": " ".join(f"{k}={v}" for k, v in found.best.params.items())})
    if found.labels:
        table(["label", "images"], sorted(found.labels.items()))
    return 0


@models.command("delete")
@click.argument("model")
@json_option
@pass_state
def delete_model(state: State, model: str, as_json: bool) -> int:
    """Delete a model with its images, experiments and runs."""
    found = state.client.models.find(model)
    state.client.models.delete(found.id)
    emit_json({"deleted": found.id}) if as_json else click.echo(f"deleted model {found.id}")
    return 0


def _print_upload(result: UploadResult) -> None:
    click.echo(f"added {result.added}, duplicate {result.duplicates}, conflicting "
               f"{len(result.label_conflicts)}, rejected {len(result.rejected)}; the model has "
               f"{result.image_count} images")
    for conflict in result.label_conflicts:
        click.echo(f"  conflicting: {conflict.get('name')} is already labelled "
                   f"{conflict.get('kept_label')!r}, not {conflict.get('label')!r}")
    for rejected in result.rejected:
        click.echo(f"  rejected: {rejected.get('name')}: {rejected.get('reason')}")


@click.command()
@click.argument("model")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@json_option
@pass_state
def upload(state: State, model: str, paths: tuple[str, ...], as_json: bool) -> int:
    """Upload images, archives and folders (a sub-folder's name is its images' label:
    digits/7/a.png is a 7). Sent in requests of bounded size, each retried on failure."""
    found = state.client.models.find(model)
    progress = sys.stderr.isatty() and not as_json
    result = state.client.models.upload(found.id, *paths, progress=progress)
    if as_json:
        emit_json({"added": result.added, "duplicates": result.duplicates,
                   "label_conflicts": result.label_conflicts, "rejected": result.rejected,
                   "image_count": result.image_count, "labels": result.labels})
    else:
        _print_upload(result)
    return 0


@click.group()
def code() -> None:
    """A model's own code."""


@code.command("push")
@click.argument("model")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@json_option
@pass_state
def push_code(state: State, model: str, folder: str, as_json: bool) -> int:
    """Upload FOLDER as the model's code; prints the version."""
    found = state.client.models.find(model)
    version = state.client.models.push_code(found.id, folder)
    emit_json(version.raw) if as_json else click.echo(version.version)
    return 0


COMMANDS = [models, upload, code]
