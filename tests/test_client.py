"""The `sweeplab` command against a real running service (the API and a worker on the real
RabbitMQ, the fake scripts): login, a model, a labelled folder uploaded, sweeps watched piped
and in a pseudo-terminal, runs, logs, best, predict, `--json`, and the exit codes of a failed
sweep, a stopped watch and a wrong token. And the wheel the service serves, installed by pip
into a fresh venv."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import (
    FAKE_PREDICT,
    FAKE_TRAIN,
    SWEEPLAB,
    png_bytes,
    sweeplab,
    sweeplab_env,
    sweeplab_in_terminal,
)

pytestmark = pytest.mark.e2e
TOKEN = "client-test-token"
ROOT = Path(__file__).resolve().parent.parent


def _stack(make_stack, **env: str):
    return make_stack(SWEEPLAB_TRAIN_SCRIPT=str(FAKE_TRAIN), SWEEPLAB_TEST_SCRIPT=str(FAKE_PREDICT),
                      SWEEPLAB_API_TOKEN=TOKEN, FAKE_TRAIN_SLEEP="0.2", **env)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _digits(folder: Path) -> Path:
    """digits/1/*.png and digits/2/*.png (4 each), and a note that is no image."""
    for n in range(8):
        label = folder / "digits" / str(1 + n % 2)
        label.mkdir(parents=True, exist_ok=True)
        (label / f"{n}.png").write_bytes(png_bytes(n * 20, 8 + n))
    (folder / "digits" / "notes.txt").write_text("not an image")
    return folder / "digits"


def test_a_user_logs_in_uploads_sweeps_watches_and_predicts(make_stack, tmp_path):
    stack = _stack(make_stack)
    home = tmp_path / "home"
    # Given a login with the token on standard input (not a terminal)
    said = _ok(sweeplab("login", stack.base, home=home, stdin=TOKEN + "\n"))
    saved = home / ".config" / "sweeplab" / "config.ini"
    assert said == f"logged in to {stack.base} as profile 'default'; saved in {saved}\n"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600 and TOKEN in saved.read_text()
    # When a model is made and a labelled folder uploaded
    model = _ok(sweeplab("models", "create", "digits", home=home)).strip()
    assert model.isdigit()
    uploaded = _ok(sweeplab("upload", model, str(_digits(tmp_path)), home=home))
    assert uploaded.startswith("added 8, duplicate 0, conflicting 0, rejected 1;")
    assert "rejected: notes.txt:" in uploaded
    again = json.loads(_ok(sweeplab("upload", "digits", str(tmp_path / "digits" / "1"),
                                    "--json", home=home)))
    assert (again["added"], again["duplicates"], again["labels"]) == (0, 4, {"1": 4, "2": 4})
    shown = json.loads(_ok(sweeplab("models", "show", model, "--json", home=home)))
    assert shown["labels"] == {"1": 4, "2": 4} and shown["image_count"] == 8

    # And a sweep is watched through a pipe: plain lines, one per change
    done = sweeplab("sweep", model, "--grid", "i=0.1,0.2", "--grid", "j=1,2", "--grid", "k=5",
                    "--watch", "--interval", "0.2", home=home)
    lines = _ok(done).splitlines()
    experiment = int(lines[0].split()[1])
    assert lines[0] == f"experiment {experiment} (4 runs): {stack.base}/experiments/{experiment}"
    assert any("running:" in line and "ended" in line for line in lines[1:-1]), lines
    assert lines[-1].startswith(f"experiment {experiment} completed: best accuracy=")
    assert "\x1b[" not in done.stdout  # no terminal, no escape codes

    # Then runs, logs, best and predict answer, as tables and as JSON
    runs = json.loads(_ok(sweeplab("runs", str(experiment), "--json", home=home)))["runs"]
    assert sorted((r["params"]["i"], r["params"]["j"]) for r in runs) == [
        (0.1, 1), (0.1, 2), (0.2, 1), (0.2, 2)]
    assert all(run["status"] == "succeeded" for run in runs)
    table = _ok(sweeplab("runs", str(experiment), "--sort", "value", home=home)).splitlines()
    assert table[0].split() == ["run", "status", "i", "j", "k", "seed", "accuracy",
                                "duration_s", "error"]
    best_run = max(runs, key=lambda run: run["accuracy"])
    assert table[1].split()[0] == str(best_run["id"])  # best first
    log = _ok(sweeplab("logs", str(best_run["id"]), "--follow", home=home))
    assert "loading images from" in log and "'accuracy'" in log
    best = json.loads(_ok(sweeplab("best", model, "--json", home=home)))
    assert best["run_id"] == best_run["id"] and best["params"] == best_run["params"]
    assert f"run         {best_run['id']}" in _ok(sweeplab("best", model, home=home))
    images = [tmp_path / "digits" / "1" / "0.png", tmp_path / "digits" / "2" / "1.png"]
    predicted = json.loads(_ok(sweeplab("predict", model, *map(str, images), "--json",
                                        home=home)))["predictions"]
    assert [(p["name"], p["output"]["label"], p["run_id"]) for p in predicted] == [
        ("0.png", "7", best_run["id"]), ("1.png", "7", best_run["id"])]
    rows = _ok(sweeplab("predict", model, *map(str, images), home=home)).splitlines()
    assert rows[0].split() == ["image", "label", "confidence"]
    assert rows[1] == f"{images[0]}  7      0.5000"
    workers = json.loads(_ok(sweeplab("workers", "--json", home=home)))["workers"]
    assert workers and workers[0]["status"] == "alive"
    listed = json.loads(_ok(sweeplab("models", "--json", home=home)))["models"]
    assert [(m["name"], m["best"]["run_id"]) for m in listed] == [("digits", best_run["id"])]

    # And in a terminal the same watch is a live view, drawn in place, that ends
    code, drawn = sweeplab_in_terminal("sweep", model, "--grid", "i=0.3,0.4", "--grid", "j=1",
                                       "--grid", "k=5", "--watch", "--interval", "0.2",
                                       home=home)
    assert code == 0, drawn
    assert "runs/min" in drawn and "best so far:" in drawn and "━" not in drawn
    assert "\x1b[2K" in drawn or "\x1b[1A" in drawn  # rich's Live redraws over itself
    assert "completed: best accuracy=" in drawn.splitlines()[-1]

    # And a folder of the model's own code is pushed: its version, as the API names it
    example = Path(__file__).resolve().parent.parent / "examples" / "svm"
    pushed = json.loads(_ok(sweeplab("code", "push", model, str(example), "--json", home=home)))
    assert (pushed["train"], pushed["test"]) == ("train.py", "test.py")
    assert _ok(sweeplab("code", "push", model, str(example), home=home)).strip() == \
        pushed["version"]  # the same tree again: the same version
    assert json.loads(_ok(sweeplab("models", "show", model, "--json", home=home)))[
        "code_version"] == pushed["version"]


def test_a_failed_sweep_a_stopped_watch_and_a_wrong_token(make_stack, tmp_path):
    stack = _stack(make_stack)
    home = tmp_path / "home"
    env = {"SWEEPLAB_URL": stack.base, "SWEEPLAB_TOKEN": TOKEN}
    model = _ok(sweeplab("models", "create", "m", home=home, **env)).strip()
    _ok(sweeplab("upload", model, str(_digits(tmp_path)), home=home, **env))
    # A grid the fake script cannot train (it reads --i, --j and --k): exit 1, reasons shown
    failed = sweeplab("sweep", model, "--grid", "x=1,2", "--watch", "--interval", "0.2",
                      home=home, **env)
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.count(" failed (x=") == 2 and "KeyError: 'i'" in failed.stdout
    assert failed.stdout.splitlines()[-1].endswith("failed: no run succeeded")
    experiment = int(failed.stdout.split()[1])
    runs = json.loads(_ok(sweeplab("runs", str(experiment), "--status", "failed", "--json",
                                   home=home, **env)))["runs"]
    follow = sweeplab("logs", str(runs[0]["id"]), "--follow", home=home, **env)
    assert follow.returncode == 1 and "KeyError" in follow.stdout

    # Ctrl-C stops the watching only: the sweep goes on, and a new watch sees it end
    watching = subprocess.Popen([str(SWEEPLAB), "sweep", model, "--watch"], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=sweeplab_env(home, **env))
    assert watching.stdout is not None
    first = watching.stdout.readline()  # experiment N (27 runs): URL
    watching.stdout.readline()  # its first state line: the watch is polling
    watching.send_signal(signal.SIGINT)
    out, err = watching.communicate(timeout=30)
    assert watching.returncode == 130, err
    running = int(first.split()[1])
    assert f"stopped watching; experiment {running} keeps running" in err
    assert "Traceback" not in err
    ended = json.loads(_ok(sweeplab("watch", str(running), "--json", home=home, **env)))
    assert ended["status"] == "completed" and ended["counts"]["succeeded"] == 27

    # A wrong token: one line, exit 2, never a traceback; and nothing saved by login
    wrong = sweeplab("models", home=home, SWEEPLAB_URL=stack.base, SWEEPLAB_TOKEN="nope")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr.startswith("sweeplab: the server refused the token (401)")
    assert len(wrong.stderr.strip().splitlines()) == 1
    login = sweeplab("login", stack.base, home=home, stdin="nope\n")
    assert login.returncode == 2 and "refused the token" in login.stderr
    assert not (home / ".config" / "sweeplab" / "config.ini").exists()


def test_the_service_serves_its_wheel_and_pip_installs_a_working_command(make_stack,
                                                                            tmp_path):
    stack = _stack(make_stack, name="wheel")
    assert (ROOT / "client" / "dist").is_dir(), "scripts/setup.sh builds the client's wheel"
    with urllib.request.urlopen(f"{stack.base}/client/", timeout=30) as response:
        served = json.load(response)
    assert served["install"] == f"pip install {stack.base}{served['wheel']}"
    # When a fresh venv installs that URL (the dependencies from the package index)
    venv = tmp_path / "laptop"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", stack.base + served["wheel"]],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    # Then its `sweeplab` works, and talks to the service
    helped = subprocess.run([str(venv / "bin" / "sweeplab"), "--help"], capture_output=True,
                            text=True, timeout=60, env=sweeplab_env(tmp_path))
    assert helped.returncode == 0 and "sweep" in helped.stdout
    version = subprocess.run([str(venv / "bin" / "sweeplab"), "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"sweeplab, version {served['version']}"
    env = {**sweeplab_env(tmp_path), "SWEEPLAB_URL": stack.base, "SWEEPLAB_TOKEN": TOKEN}
    listed = subprocess.run([str(venv / "bin" / "sweeplab"), "models", "--json"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"models": []}
