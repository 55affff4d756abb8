"""What each kind of script may reach (its `ScriptView`), one builder per purpose: training,
a cold prediction, a warm prediction process. Read by service/execution/sandbox.py."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from service.execution.command import Entry
from service.execution.sandbox import ScriptView, sandbox_in_use
from service.settings import Settings

GPU_SHARED_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


def _venv_paths(executable: Path) -> list[Path]:
    """A virtual environment's folder and the prefix of the interpreter it was made from."""
    venv = executable.parent.parent
    config = venv / "pyvenv.cfg"
    if not config.is_file():
        return []
    paths = [venv]
    for line in config.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            paths.append(Path(value.strip()).parent)
    return paths


def interpreter_paths(settings: Settings, python: str) -> list[Path]:
    """The script's interpreter (the deployment's, or a code version's environment's): its
    venv and its installation's prefix. Never a folder that holds the data directory (a venv
    whose prefix is `/` would otherwise show it all)."""
    found = shutil.which(python) or python
    executable = Path(found).absolute()
    paths = [*_venv_paths(executable), executable.resolve().parent.parent]
    if found == sys.executable:
        paths += [Path(sys.prefix), Path(sys.base_prefix)]
    data = settings.data_dir.resolve()
    unique = dict.fromkeys(path for path in paths if not data.is_relative_to(path))
    return list(unique)


def script_paths(settings: Settings, entry: Entry) -> list[Path]:
    """A code version's whole tree (its scripts import their own modules); or the deployment's
    scripts with the folder each lies in (a test.py imports train.py, or a module beside it),
    except a folder that holds the data directory (the project folder, with the default
    `./data`): there, each script file by itself."""
    if entry.tree is not None:
        return [entry.tree]
    data = settings.data_dir.resolve()
    found: list[Path] = []
    for script in (settings.train_script, settings.test_script):
        folder = script.resolve().parent
        found.append(script if data.is_relative_to(folder) else folder)
    return list(dict.fromkeys(found))


def gpu_devices(env: Mapping[str, str]) -> tuple[Path, ...]:
    """The GPU device nodes a script may open: those of its worker thread's GPUs
    (CUDA_VISIBLE_DEVICES, set from SWEEPLAB_GPUS), or every one when the worker owns none."""
    dev = Path("/dev")
    shared = [dev / name for name in GPU_SHARED_DEVICES]
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return (*shared, *sorted(dev.glob("nvidia[0-9]*")))
    return (*shared, *(dev / f"nvidia{gpu}" for gpu in visible.split(",") if gpu.isdigit()))


def script_view(settings: Settings, entry: Entry, workdir: Path, read_only: Sequence[Path],
                writable: Sequence[Path] = (), devices: Sequence[Path] = ()) -> ScriptView:
    """A view with the deployment's limits and network, the entry's interpreter and scripts."""
    return ScriptView(
        workdir=workdir,
        read_only=(*interpreter_paths(settings, entry.python), *script_paths(settings, entry),
                   *read_only),
        writable=tuple(writable), devices=tuple(devices), network=settings.script_network,
        memory_mb=settings.script_memory_mb, tasks=settings.script_tasks,
        sandbox=sandbox_in_use(settings.sandbox))


def training_view(settings: Settings, entry: Entry, images: Path, run_dir: Path,
                  env: Mapping[str, str]) -> ScriptView:
    """Training: its images snapshot read-only, its own run folder read-write."""
    return script_view(settings, entry, run_dir, [images], [run_dir], gpu_devices(env))


def cold_predict_view(settings: Settings, entry: Entry, run_dir: Path,
                      image: Path) -> ScriptView:
    """A cold prediction: the best run's folder (its working directory) and the one image it
    labels, read-only."""
    return script_view(settings, entry, run_dir, [run_dir, image])


def warm_predict_view(settings: Settings, entry: Entry, run_dir: Path) -> ScriptView:
    """A warm prediction process: the best run's folder; it is sent images of requests to
    come, which each land in a folder of their own under the temporary folder, so it reads
    that (read-only: other requests' uploads in flight, never the database or the stores)."""
    return script_view(settings, entry, run_dir, [run_dir, settings.tmp_dir])


def _local_paths(value: str) -> list[Path]:
    """The local folders a pip setting names (PIP_FIND_LINKS: paths or file:// URLs)."""
    words = value.split()
    return [Path(word.removeprefix("file://")) for word in words
            if word.startswith(("/", "file:///"))]


def build_view(settings: Settings, tree: Path, staging: Path) -> ScriptView:
    """Building a code version's environment: pip runs the packages' own build code (an
    sdist's setup.py), as untrusted as any script. It reads the code version's tree, the
    interpreter, pip's configuration and local wheelhouses, writes only the new environment,
    and has the network (the package index) whatever SWEEPLAB_SCRIPT_NETWORK says."""
    config = [Path("/etc/pip.conf"), Path("/etc/xdg/pip"), Path.home() / ".config" / "pip",
              Path.home() / ".pip"]
    wheelhouses = [path for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
                   for path in _local_paths(os.environ.get(name, ""))]
    return ScriptView(
        workdir=staging,
        read_only=(*interpreter_paths(settings, settings.python), tree,
                   *config, *wheelhouses),
        writable=(staging,), network=True, memory_mb=settings.script_memory_mb,
        tasks=settings.script_tasks, sandbox=sandbox_in_use(settings.sandbox))
