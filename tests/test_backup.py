"""Backups: one archive of a running host (database and data directory), restored elsewhere."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from service.core.db import database
from service.core.tables import Experiment, Image, MLModel, ModelImage, Run
from service.migrate import apply_migrations, migration_names
from service.ops.backup import BackupError, Padded, create, restore
from service.storage import build_snapshot, image_path
from tests.conftest import make_settings
from tests.e2e_support import (
    FAKE_SCRIPTS,
    ROOT,
    Stack,
    best_of,
    multipart,
    small_dataset,
    wait_until_running,
)
from tests.helpers import png_bytes, run_params, wait_for

FAKE = {**FAKE_SCRIPTS, "SWEEPLAB_LEASE_S": "3"}
TABLES = ("model", "image", "model_image", "experiment", "run", "schema_migration")


def populate(settings) -> Run:
    """A model with two images, an experiment with its snapshot, a succeeded run's folder,
    and what a backup leaves out: temp files, staging folders, a symbolic link."""
    model = MLModel.create(name="kept")
    images = []
    for shade in (1, 2):
        data = png_bytes(shade)
        sha = hashlib.sha256(data).hexdigest()
        path = image_path(settings, sha, "png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        Image.create(sha256=sha, extension="png", size_bytes=len(data), width=8, height=8)
        ModelImage.create(model=model, image=sha, label=str(shade))
        images.append((path, str(shade)))
    experiment = Experiment.create(model=model, grid={"i": [0.1], "j": [1], "k": [1]},
                                   timeout_s=10, image_count=2, status="completed")
    build_snapshot(settings, experiment.id, images)
    run = Run.create(experiment=experiment, **run_params(0.1, 1, 1),
                     status="succeeded", accuracy=0.9, attempts=1)
    MLModel.update(best_run_id=run.id).execute()
    run_dir = settings.runs_dir / str(run.id)
    run_dir.mkdir(parents=True)
    (run_dir / "model.txt").write_text("0.1 1 1\n")
    (run_dir / "elsewhere").symlink_to("/etc")
    for junk in (settings.tmp_dir / "upload-1" / "part", settings.runs_dir / ".incoming-9" / "x",
                 settings.snapshots_dir / ".9-staging" / "x"):
        junk.parent.mkdir(parents=True, exist_ok=True)
        junk.write_bytes(b"half")
    return run


def rows() -> dict[str, list[tuple]]:
    return {table: database.execute_sql(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in TABLES}


def files(data_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(data_dir)): path.read_bytes()
            for path in sorted(data_dir.rglob("*")) if path.is_file() and not path.is_symlink()
            and path.parts[len(data_dir.parts)] in ("images", "snapshots", "runs")}


def test_round_trip_keeps_every_row_file_and_hard_link(settings, db, tmp_path):
    # Given a host with a model, images, a snapshot and a run's folder
    run = populate(settings)
    before = rows()
    # When it is backed up, then restored onto an empty data directory
    archive = tmp_path / "host.tar.gz"
    printed = create(settings, archive)
    target = make_settings(tmp_path / "restored")
    restored = restore(target, archive)
    # Then every row and file is back, a snapshot's files still hard links to images/...
    database.connect(reuse_if_open=True)
    assert rows() == before
    kept = {name: data for name, data in files(settings.data_dir).items() if "/." not in name}
    assert files(target.data_dir) == kept and f"runs/{run.id}/model.txt" in kept
    snapshot_file = next((target.snapshots_dir / str(run.experiment_id)).rglob("*.png"))
    image = image_path(target, snapshot_file.stem, "png")
    assert snapshot_file.stat().st_ino == image.stat().st_ino
    # ...and neither temp files, staging folders nor links came along, and it says what it did
    assert not list(target.tmp_dir.iterdir()) and not (target.runs_dir / ".incoming-9").exists()
    assert not (target.runs_dir / str(run.id) / "elsewhere").exists()
    assert printed[0] == "database (sqlite): 1 models, 1 experiments, 1 runs, 2 images"
    assert "snapshots/: 0 files, 2 hard links, 0 bytes" in printed
    assert any(f"left out runs/{run.id}/elsewhere" in line for line in printed)
    assert restored[1] == printed[0] and not any("warning" in line for line in printed)


def test_an_older_backup_is_migrated_on_restore(settings, tmp_path, monkeypatch):
    import service.migrate as migrate_module
    from service.core.db import open_database

    # Given a backup of a database at the first migration only
    open_database(settings.database_url)
    monkeypatch.setattr(migrate_module, "migration_names", lambda: ["m0001_initial"])
    apply_migrations()
    database.execute_sql("INSERT INTO model (name, description, created_at) "
                         "VALUES ('old', '', '2026-01-01')")
    database.close()
    monkeypatch.undo()
    archive = tmp_path / "old.tar.gz"
    create(settings, archive)
    # When it is restored by this code
    printed = restore(make_settings(tmp_path / "new"), archive)
    # Then the later migrations are applied, and the model is there
    later = ", ".join(migration_names()[1:])
    assert printed[0].endswith(f"migrations applied: {later}")
    assert database.execute_sql("SELECT name FROM model").fetchall() == [("old",)]
    database.close()


def test_the_note_counts_only_the_runs_a_restored_service_takes_up(settings, db, tmp_path):
    # Given a finished sweep; a running one, with a run running and a run queued; and an
    # experiment never started, its three runs queued
    model = populate(settings).experiment.model
    experiments = {status: Experiment.create(model=model, grid={"i": [0.1], "j": [1], "k": [1]},
                                             timeout_s=10, image_count=2, status=status)
                   for status in ("running", "created")}
    for experiment in experiments.values():
        (settings.snapshots_dir / str(experiment.id)).mkdir()
    for k, status in enumerate(("running", "queued")):
        Run.create(experiment=experiments["running"], **run_params(0.1, 1, k),
                   status=status, attempts=1 if status == "running" else 0)
    for k in range(3):
        Run.create(experiment=experiments["created"], **run_params(0.1, 1, k))
    # When it is backed up, then restored
    archive = tmp_path / "host.tar.gz"
    printed = create(settings, archive)
    restored = restore(make_settings(tmp_path / "restored"), archive)
    database.close()
    # Then both say that the running sweep's two runs are taken up, and nothing of the others
    note = ("note: 2 runs of running experiments were queued or running: the restored service "
            "runs them (again, for those that had started: their folders may be partial)")
    assert [line for line in printed if line.startswith("note:")] == [
        note, "note: left out runs/1/elsewhere: a symbolic link or a special file"]
    assert restored[2:] == [note]
    assert printed[0] == "database (sqlite): 1 models, 3 experiments, 6 runs, 2 images"


def test_restore_refuses_a_non_empty_data_directory(settings, db, tmp_path):
    # Given a backup, and a host whose data directory holds a file already
    archive = tmp_path / "host.tar.gz"
    create(settings, archive)
    target = tmp_path / "busy"
    (target / "images").mkdir(parents=True)
    (target / "images" / "mine.png").write_bytes(b"keep me")
    # When the wrapper script restores onto it (a relative archive path, from another folder)
    done = subprocess.run([str(ROOT / "scripts" / "backup.sh"), "restore", "host.tar.gz"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SWEEPLAB_DATA_DIR": str(target)})
    # Then it refuses, says why, and leaves everything as it was
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is not empty" in done.stderr and "mine.png" in done.stderr
    assert [p.name for p in target.rglob("*")] == ["images", "mine.png"]


def test_create_refuses_to_write_into_the_data_directory(settings, db):
    # Given the service's settings, when a backup is asked for inside its data directory
    with pytest.raises(BackupError, match="not in the data dir"):
        create(settings, settings.data_dir / "backup.tar.gz")
    # Then nothing is written there
    assert not list(settings.data_dir.glob("*backup.tar.gz*"))


def test_a_file_that_shrinks_while_copied_keeps_the_archive_whole():
    # Given a file tar reads as 5 bytes that has 3 left (a log truncated meanwhile)
    padded = Padded(io.BytesIO(b"abc"), 5)
    # When it is read, then tar gets its 5 bytes, zero-padded, and the shrink is noticed
    assert padded.read(4) + padded.read(4) + padded.read(4) == b"abc\0\0" and padded.short


def tampered(good: Path, path: Path, name: str, kind: bytes = tarfile.REGTYPE,
             linkname: str = "") -> Path:
    """A copy of the archive `good` with one more member."""
    with tarfile.open(good, "r:gz") as source, tarfile.open(path, "w:gz") as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isreg() else None)
        extra = tarfile.TarInfo(name)
        extra.type, extra.linkname = kind, linkname
        extra.size = 4 if kind == tarfile.REGTYPE else 0
        target.addfile(extra, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize(("name", "kind", "linkname"), [
    ("../outside", tarfile.REGTYPE, ""),
    ("images/../../outside", tarfile.REGTYPE, ""),
    ("/tmp/sweeplab-backup-test-absolute", tarfile.REGTYPE, ""),
    ("runs/1/model.txt", tarfile.LNKTYPE, "../outside"),
    ("runs/1/model.txt", tarfile.LNKTYPE, "/etc/passwd"),
    ("runs/1/model.txt", tarfile.SYMTYPE, "../../../outside"),
    ("runs/1/dev", tarfile.CHRTYPE, ""),
    ("evil.sh", tarfile.REGTYPE, ""),
    ("manifest.json", tarfile.REGTYPE, ""),
])
def test_a_tampered_archive_is_refused_before_anything_is_written(settings, db, tmp_path, name,
                                                                  kind, linkname):
    # Given a good backup with one member added that points out of the data directory
    good = tmp_path / "good.tar.gz"
    create(settings, good)
    bad = tampered(good, tmp_path / "bad.tar.gz", name, kind, linkname)
    target = make_settings(tmp_path / "target" / "data")
    # When it is restored, then it is refused, and nothing was written anywhere
    with pytest.raises(BackupError, match="refusing this archive"):
        restore(target, bad)
    assert not target.data_dir.exists()
    assert not (tmp_path / "target" / "outside").exists()
    assert not Path("/tmp/sweeplab-backup-test-absolute").exists()


# --- end to end: real processes, the real RabbitMQ, SQLite and PostgreSQL --------------------

class ModelWriter(threading.Thread):
    """A client that keeps creating models and uploading their images until stopped."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack, self.done, self.errors, self.halt = stack, [], [], threading.Event()

    def run(self) -> None:
        seed = 10
        while not self.halt.is_set():
            try:
                self.done.append(small_dataset(self.stack, f"writer-{seed}", seed))
            except Exception as error:  # noqa: BLE001 (reported by the test)
                self.errors.append(error)
            seed += 1


@pytest.fixture
def host(make_stack: Callable[..., Stack]) -> Callable[..., Stack]:
    def start(name: str, worker: bool = True, **env: str) -> Stack:
        # 1 s runs on 4 threads: a 27-run sweep outlasts the backup by seconds
        return make_stack(name=name, worker=worker, threads=4, FAKE_TRAIN_SLEEP="1",
                          **FAKE, **env)

    return start


def same(source: Stack, target: Stack, path: str) -> dict:
    """Both hosts answer `path` alike; the answer."""
    mine, theirs = source.get(path), target.get(path)
    assert mine[0] == 200 and theirs == mine, path
    return mine[1]


def backup_while_writing(host, tmp_path: Path, source_env: dict, target_env: dict) -> None:
    # Given a finished sweep, a sweep still running, and a client adding models all along
    source = host("source", **source_env)
    finished_model = small_dataset(source, "finished", 0)
    status, created = source.request("POST", f"/api/v1/models/{finished_model}/experiments",
                                     {"grid": {"i": [0.1, 0.2], "j": [1, 2], "k": [1]}})
    finished = source.wait_for_experiment(created["id"])
    running_model = small_dataset(source, "running", 1)
    status, created = source.request("POST", f"/api/v1/models/{running_model}/experiments", {})
    running = created["id"]
    wait_until_running(source, running, succeeded_at_least=2)
    writer = ModelWriter(source)
    writer.start()
    wait_for(lambda: len(writer.done) >= 2, 60, "two models written", every_s=0.05)
    written_before = list(writer.done)
    _, before = source.get(f"/api/v1/experiments/{running}")
    # When the backup script runs (from another folder, to a relative path)
    done = subprocess.run([str(ROOT / "scripts" / "backup.sh"), "create", "host.tar.gz"],
                          cwd=tmp_path, env=source.env, capture_output=True, text=True,
                          timeout=300)
    _, after = source.get(f"/api/v1/experiments/{running}")
    writer.halt.set()
    writer.join(timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert after["status"] == "running", after["counts"]
    assert len(writer.done) > len(written_before), "no model was written during the backup"
    assert not writer.errors and "warning" not in done.stdout, done.stdout
    source_final = source.wait_for_experiment(running)
    # Then restored onto a fresh host (its own data directory, database and vhost)...
    target_data = tmp_path / "target" / "data"
    restored = subprocess.run(
        [sys.executable, "-m", "service.backup", "restore", str(tmp_path / "host.tar.gz")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "SWEEPLAB_DATA_DIR": str(target_data), **FAKE, **target_env})
    assert restored.returncode == 0, restored.stdout + restored.stderr
    target = host("target", worker=False, **target_env)
    # ...every model, experiment, run, log and best of the finished sweep answers alike
    for path in (f"/api/v1/models/{finished_model}", f"/api/v1/models/{finished_model}/best",
                 f"/api/v1/models/{finished_model}/experiments",
                 f"/api/v1/experiments/{finished['id']}"):
        same(source, target, path)
    for run in finished["runs"]:
        same(source, target, f"/api/v1/runs/{run['id']}")
        same(source, target, f"/api/v1/runs/{run['id']}/logs")
    for model_id in written_before:
        same(source, target, f"/api/v1/models/{model_id}")
    _, models = target.get("/api/v1/models")
    _, source_models = source.get("/api/v1/models")
    assert {m["id"] for m in models["models"]} <= {m["id"] for m in source_models["models"]}
    # ...the running sweep is as the backup found it: its results at least those seen before
    _, at_backup = target.get(f"/api/v1/experiments/{running}")
    kept = [run for run in at_backup["runs"] if run["status"] == "succeeded"]
    assert before["counts"]["succeeded"] <= len(kept) <= after["counts"]["succeeded"]
    final_runs = {run["id"]: run for run in source_final["runs"]}
    assert all(run == final_runs[run["id"]] for run in kept)
    # ...predict answers from the restored host, as it did from the old one
    body, headers = multipart({"image": ("x.png", png_bytes(3))})
    answers = [stack.request("POST", f"/api/v1/models/{finished_model}/predict", data=body,
                             headers=headers) for stack in (source, target)]
    assert answers[1][0] == 200, answers[1]
    outputs = [{key: value for key, value in answer[1]["output"].items() if key != "image"}
               for answer in answers]  # the image's temp path differs
    assert outputs[1] == outputs[0] and outputs[0]["label"] == "7"
    assert answers[1][1]["run_id"] == finished["best"]["run_id"]
    # ...and its worker finishes the sweep the backup caught half-way, keeping what was done
    target.start_worker()
    completed = target.wait_for_experiment(running, timeout=120)
    assert completed["status"] == "completed" and completed["counts"]["succeeded"] == 27
    assert completed["best"]["run_id"] == best_of(completed["runs"])["id"]
    assert all(run in completed["runs"] for run in kept)


@pytest.mark.e2e
def test_a_backup_taken_while_sweeps_run_restores_every_result_on_sqlite(host, tmp_path):
    backup_while_writing(host, tmp_path, {}, {})


@pytest.mark.e2e
def test_a_backup_taken_while_sweeps_run_restores_every_result_on_postgresql(
        host, tmp_path, postgres_database):
    source_url, target_url = postgres_database
    backup_while_writing(host, tmp_path, {"SWEEPLAB_DATABASE_URL": source_url},
                         {"SWEEPLAB_DATABASE_URL": target_url})
