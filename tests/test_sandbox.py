"""Scripts in a sandbox: what bubblewrap is asked to show a script, and a hostile script run as a
training run (through the real training code, then a real worker), a cold and a warm prediction
(through the real API), whose every attempt to reach past its lane fails."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from service.execution import sandbox
from service.execution.command import deployment_test, deployment_train
from service.execution.sandbox import SandboxUnavailable, ScriptView, bwrap_argv, launch_command
from service.execution.supervise import ChildResult
from service.execution.training import STDERR_NAME, TrainingJob, judge, run_training
from service.execution.views import cold_predict_view, training_view, warm_predict_view
from service.settings import PROJECT_ROOT, Settings, ensure_data_dirs
from tests.conftest import make_settings
from tests.e2e_support import WORKER_TOKEN, multipart, small_dataset, start_sweep
from tests.helpers import png_bytes

HOSTILE = Path(__file__).parent / "scripts" / "hostile.py"
needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_works(), reason="bubblewrap cannot run here")


def bound(argv: list[str], option: str) -> list[str]:
    """The sources of every `option SRC DEST` in a bwrap argv (asserting SRC == DEST)."""
    found = []
    for n, word in enumerate(argv[:-2]):
        if word == option:
            assert argv[n + 1] == argv[n + 2], argv[n:n + 3]
            found.append(argv[n + 1])
    return found


def hostile_copy(folder: Path, serve: bool = False) -> Path:
    """A copy of the hostile script (the sandbox-off test may append to it), opted in to the
    serve protocol or not."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / ("hostile_serve.py" if serve else "hostile.py")
    shutil.copy(HOSTILE, copy)
    if serve:
        copy.write_text(copy.read_text() + "\n# sweeplab: serve\n")
    return copy


# --- what bubblewrap is asked for ---------------------------------------------------------------

def test_a_training_view_binds_its_inputs_read_only_its_run_folder_and_nothing_of_the_data(
        tmp_path):
    # Given the deployment's default: the data directory inside the project folder
    settings = make_settings(PROJECT_ROOT / "data", SWEEPLAB_TRAIN_SCRIPT="train.py",
                             SWEEPLAB_TEST_SCRIPT="test.py")
    images = settings.snapshots_dir / "7"
    run_dir = settings.runs_dir / "12"
    # When a training run's command is built
    view = training_view(settings, deployment_train(settings), images, run_dir, {})
    argv = bwrap_argv(["python", "train.py"], view)
    read_only, writable = bound(argv, "--ro-bind-try"), bound(argv, "--bind-try")
    # Then the script files, the snapshot and the interpreter are read-only, the run folder
    # writable, and neither the project folder, the data directory nor /etc/sweeplab is bound
    assert {str(settings.train_script), str(settings.test_script), str(images)} <= set(read_only)
    assert writable == [str(run_dir)]
    everything = set(read_only) | set(writable) | set(bound(argv, "--ro-bind"))
    assert str(PROJECT_ROOT) not in everything and str(settings.data_dir) not in everything
    assert not any(path.startswith("/etc/sweeplab") for path in everything)
    assert "/etc/resolv.conf" in everything and "/etc/ld.so.cache" in everything
    # and it runs in new namespaces, in its run folder, with the network by default
    assert {"--unshare-user", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
            "--new-session"} <= set(argv)
    assert "--unshare-net" not in argv
    assert argv[argv.index("--chdir") + 1] == str(run_dir)
    assert argv[-3:] == ["--", "python", "train.py"]
    # and the private /tmp comes before the binds (a data directory under /tmp stays visible)
    assert argv.index("--tmpfs") < argv.index(str(images))


def test_network_off_unshares_it_and_predictions_see_their_run_folder_read_only(tmp_path):
    settings = make_settings(tmp_path / "data", SWEEPLAB_SCRIPT_NETWORK="off")
    run_dir, image = settings.runs_dir / "3", settings.tmp_dir / "predict-1" / "a.png"
    entry = deployment_test(settings)
    cold = bwrap_argv(["python"], cold_predict_view(settings, entry, run_dir, image))
    warm = bwrap_argv(["python"], warm_predict_view(settings, entry, run_dir))
    assert "--unshare-net" in cold and "--unshare-net" in warm
    assert {str(run_dir), str(image)} <= set(bound(cold, "--ro-bind-try"))
    assert bound(cold, "--bind-try") == [] and bound(warm, "--bind-try") == []
    assert str(settings.tmp_dir) in bound(warm, "--ro-bind-try")


def test_sandbox_off_keeps_the_command_and_limits_still_apply(tmp_path):
    plain = launch_command(["python", "x.py"], ScriptView(workdir=tmp_path, sandbox=False))
    assert plain.command[-2:] == ["python", "x.py"] and "bwrap" not in plain.command[0]
    limited = launch_command(["python", "x.py"], ScriptView(tmp_path, memory_mb=64,
                                                            sandbox=False))
    assert limited.command[-5:] == [sandbox.PRLIMIT, f"--as={64 << 20}", "--", "python",
                                    "x.py"]


def test_in_the_sandbox_the_limits_are_set_inside_it(tmp_path, monkeypatch):
    # RLIMIT_NPROC set inside the sandbox's user namespace counts its processes only
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    launch = launch_command(["python", "x.py"], ScriptView(tmp_path, memory_mb=64, tasks=9))
    assert launch.command[0] == sandbox.BWRAP and "--unshare-user" in launch.command
    assert launch.command[-6:] == [sandbox.PRLIMIT, f"--as={64 << 20}", "--nproc=9", "--",
                                   "python", "x.py"]
    assert launch.preexec is None and launch.cgroup is None  # nothing between fork and exec


def test_on_refuses_without_bubblewrap_and_auto_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(sandbox, "BWRAP", None)
    monkeypatch.setattr(sandbox, "bwrap_works", lambda: False)
    with pytest.raises(SandboxUnavailable, match="SWEEPLAB_SANDBOX=on needs the sandbox, but "
                                                 "bubblewrap \\(bwrap\\) is not installed"):
        sandbox.check_sandbox("on")
    with pytest.raises(SandboxUnavailable, match="SWEEPLAB_SCRIPT_NETWORK=off needs"):
        sandbox.check_sandbox("auto", network=False)
    with caplog.at_level(logging.WARNING, logger="sweeplab.sandbox"):
        sandbox.check_sandbox("auto")
        sandbox.check_sandbox("off")
    assert [r.getMessage() for r in caplog.records] == [
        "scripts run without a sandbox: bubblewrap (bwrap) is not installed "
        "(SWEEPLAB_SANDBOX=auto)"]


FORK_COUNTER = """import os, time
children = []
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
except OSError:
    print(len(children))
"""


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists()
                    or not sandbox.SETPRIV, reason="needs root to become another user")
def test_for_a_service_user_the_task_limit_counts_the_sandbox_only(monkeypatch):
    # Given a user (nobody) who already has 20 processes, as a deployment's API and worker do
    folder = Path(tempfile.mkdtemp())
    others: list[subprocess.Popen[bytes]] = []
    try:
        folder.chmod(0o755)
        script = folder / "forks.py"
        script.write_text(FORK_COUNTER)
        as_nobody = [sandbox.SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups"]
        others += [subprocess.Popen([*as_nobody, "sleep", "30"]) for _ in range(20)]
        # When a script of that user forks all it can in the sandbox, with 16 tasks allowed
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: 65534)
        view = ScriptView(folder, read_only=(script,), tasks=16)
        launch = launch_command(["/usr/bin/python3", str(script)], view)
        done = subprocess.run([*as_nobody, *launch.command], capture_output=True, text=True,
                              timeout=60)
        # Then its namespace held 16 tasks: bwrap's init, itself and 14 children; the user's
        # other processes did not count
        assert done.stdout.strip() == "14", done.stderr
    finally:
        for process in others:
            process.kill()
            process.wait()
        shutil.rmtree(folder)


CONNECT = """import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("connected")
except OSError as error:
    print("refused:", error)
"""


@needs_bwrap
def test_with_the_network_off_a_script_reaches_not_even_the_loopback(tmp_path):
    # Given a listener on this machine's loopback
    import socket
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = str(server.getsockname()[1])
        script = tmp_path / "connect.py"
        script.write_text(CONNECT)
        results = {}
        for network in (True, False):
            # When a script in the sandbox connects to it, with the network on and off
            view = ScriptView(tmp_path, read_only=(script, Path(sys.base_prefix),
                                                   Path(sys.prefix)), network=network)
            launch = launch_command([sys.executable, str(script), port], view)
            results[network] = subprocess.run(launch.command, capture_output=True, text=True,
                                              timeout=60).stdout.strip()
    # Then it connects only with the network on
    assert results[True] == "connected"
    assert results[False].startswith("refused:"), results


@pytest.mark.parametrize(("printed", "reason"), [
    ("BlockingIOError: [Errno 11] Resource temporarily unavailable", "task limit of 8 reached"),
    ("RuntimeError: can't start new thread", "task limit of 8 reached"),
    ("numpy.core._exceptions._ArrayMemoryError: Unable to allocate 8.00 GiB",
     "memory limit of 64 MB reached"),
    ("ValueError: a bug of its own", None)])
def test_a_failed_run_names_the_limit_its_errors_show(tmp_path, printed, reason):
    (tmp_path / STDERR_NAME).write_text(f"Traceback (most recent call last):\n{printed}\n")
    result = ChildResult(1, False, False, 0.5, memory_mb=64, tasks=8)
    error = judge(result, tmp_path, 60).error
    assert error == ((f"{reason}: " if reason else "") + "exited with code 1\n"
                     f"Traceback (most recent call last):\n{printed}")


# --- a hostile training script through the real training code ----------------------------------

def limited_settings(tmp_path: Path, **overrides: str) -> Settings:
    settings = make_settings(tmp_path / "data", SWEEPLAB_TRAIN_SCRIPT=str(hostile_copy(tmp_path)),
                             SWEEPLAB_SCRIPT_TASKS="32", SWEEPLAB_SCRIPT_MEMORY_MB="512",
                             **overrides)
    ensure_data_dirs(settings)
    (settings.data_dir / "sweeplab.db").write_bytes(b"SQLite format 3\0")
    (settings.images_dir / "ab").mkdir()
    (settings.runs_dir / "99").mkdir()
    (settings.snapshots_dir / "1").mkdir()
    return settings


def train_hostile(settings: Settings, mode: int, run_id: int = 1) -> tuple[dict, object]:
    job = TrainingJob(run_id=run_id, params={"i": 0.1, "j": mode, "k": 1},
                      images=settings.snapshots_dir / "1", run_dir=settings.runs_dir / str(run_id),
                      timeout_s=60)
    outcome = run_training(settings, job, lambda pgid: True)
    stdout = (job.run_dir / "stdout.log").read_text()
    last = stdout.strip().splitlines()[-1] if stdout.strip() else "{}"
    return json.loads(last) if last.startswith("{") else {}, outcome


@needs_bwrap
def test_a_hostile_training_script_reaches_nothing_outside_its_lane(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPLAB_WORKER_TOKEN", "held-by-the-worker-only")
    settings = limited_settings(tmp_path)
    printed, outcome = train_hostile(settings, mode=1)
    assert outcome.status == "succeeded", outcome.error
    probes = printed["probes"]
    forks = probes.pop("forks")
    assert probes == {name: False for name in probes}
    assert 0 < forks < 32


@needs_bwrap
@pytest.mark.parametrize(("mode", "reason"), [(2, "task limit of 32 reached"),
                                              (3, "memory limit of 512 MB reached")])
def test_a_script_past_its_limits_fails_saying_which(tmp_path, mode, reason):
    settings = limited_settings(tmp_path)
    _, outcome = train_hostile(settings, mode=mode)
    assert outcome.status == "failed" and outcome.error.startswith(reason + ": "), outcome.error
    # this process's run groups (sweeplab-<pid>-<n>): other test processes run scripts at once
    assert not [path for path in Path("/sys/fs/cgroup/pids").glob(f"**/sweeplab-{os.getpid()}-*")
                if (path / "cgroup.procs").read_text().strip()]


def test_without_the_sandbox_the_same_probes_get_through(tmp_path, monkeypatch):
    # Proof that the probes are real: with SWEEPLAB_SANDBOX=off the script reads the database
    monkeypatch.setenv("HOSTILE_HARMLESS", "1")
    settings = limited_settings(tmp_path, SWEEPLAB_SANDBOX="off")
    printed, outcome = train_hostile(settings, mode=1)
    assert outcome.status == "succeeded", outcome.error
    got = {name for name, value in printed["probes"].items() if value}
    assert {"database", "up_two", "other_runs", "images_store", "write_images",
            "write_script"} <= got


# --- through a real worker and the real API ----------------------------------------------------

def logs_of(stack, run_id: int) -> dict:
    status, text = stack.get(f"/api/v1/runs/{run_id}/logs")
    assert status == 200, text
    if isinstance(text, dict):  # the request helper parsed a log that is one JSON line
        return text
    return json.loads(next(line for line in reversed(text.splitlines())
                           if line.startswith("{")))


def predict_once(stack, model_id: int) -> dict:
    body, headers = multipart({"image": ("x.png", png_bytes(3))})
    status, answer = stack.request("POST", f"/api/v1/models/{model_id}/predict", data=body,
                                   headers=headers)
    assert status == 200, answer
    return answer


@needs_bwrap
@pytest.mark.e2e
def test_hostile_scripts_through_the_worker_and_the_api_reach_nothing(make_stack, tmp_path):
    # Given a stack whose training and test scripts are hostile, with small limits
    test_script = hostile_copy(tmp_path / "scripts")
    stack = make_stack(SWEEPLAB_TRAIN_SCRIPT=str(hostile_copy(tmp_path / "train")),
                       SWEEPLAB_TEST_SCRIPT=str(test_script), SWEEPLAB_SANDBOX="on",
                       SWEEPLAB_SCRIPT_TASKS="32", SWEEPLAB_SCRIPT_MEMORY_MB="512",
                       SWEEPLAB_WORKER_TOKEN=WORKER_TOKEN)
    model_id = small_dataset(stack)
    # When a sweep runs the probes (j=1), a fork bomb (2), a hoarder (3) and a plain run (4)
    done = stack.wait_for_experiment(start_sweep(stack, model_id, {"i": [0.1],
                                                                   "j": [1, 2, 3, 4], "k": [1]}))
    runs = {run["params"]["j"]: run for run in done["runs"]}
    # Then every probe failed, the limits failed their runs saying so, the others succeeded
    probes = logs_of(stack, runs[1]["id"])["probes"]
    assert probes.pop("forks") < 32 and probes == {name: False for name in probes}
    assert runs[2]["status"] == "failed"
    assert runs[2]["error"].startswith("task limit of 32 reached")
    assert runs[3]["error"].startswith("memory limit of 512 MB reached")
    assert runs[1]["status"] == runs[4]["status"] == "succeeded"
    # and the worker and the API are unharmed
    assert stack.worker.poll() is None and stack.get("/healthz")[0] == 200
    # When the hostile test script predicts cold, then warm
    cold = predict_once(stack, model_id)["output"]["probes"]
    test_script.write_text(test_script.read_text() + "\n# sweeplab: serve\n")
    warm = predict_once(stack, model_id)["output"]["probes"]
    # Then it reached nothing either way, and the API still answers
    assert cold.pop("forks") < 32 and cold == {name: False for name in cold}
    assert "forks" not in warm  # the serve loop answered: a warm process
    assert warm == {name: False for name in warm} and "write_run_folder" in warm
    assert stack.get("/healthz")[0] == 200


def test_scripts_in_a_folder_without_the_data_see_the_modules_beside_them(tmp_path):
    # Given the deployment's scripts in a folder of their own, the data elsewhere
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    settings = make_settings(tmp_path / "data", SWEEPLAB_TRAIN_SCRIPT=str(scripts / "train.py"),
                             SWEEPLAB_TEST_SCRIPT=str(scripts / "test.py"))
    # When a prediction's command is built
    argv = bwrap_argv(["python"], cold_predict_view(settings, deployment_test(settings),
                                                    settings.runs_dir / "1", tmp_path / "a.png"))
    # Then their folder is bound (test.py may import a helper module beside it), not the data
    read_only = bound(argv, "--ro-bind-try")
    assert str(scripts) in read_only
    assert not any(Path(path).is_relative_to(settings.data_dir) and path != str(
        settings.runs_dir / "1") for path in read_only)
