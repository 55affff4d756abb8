"""A code version's environment: built once per host from its requirements, offline from a
wheelhouse; a failed build remembered and answered at once; concurrent askers wait for one build.

Real `python -m venv` and `pip install`, with pip's own settings (PIP_NO_INDEX,
PIP_FIND_LINKS) passed through from the worker's environment."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.execution.environments import EnvironmentFailed, environment_python
from service.execution.views import build_view
from tests.conftest import make_settings
from tests.helpers import make_wheel

BASE_PYTHON = sys.executable


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local wheelhouse with one tiny package, and pip told to use only it."""
    house = tmp_path / "wheelhouse"
    make_wheel(house, "tinydep", "1.0", "VALUE = 42\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    return house


def _requirements(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return path


def _builds(envs: Path) -> int:
    """How many builds were started, by the headers of the build logs."""
    return sum(log.read_text().count("=== building ") for log in envs.glob("*.log"))


def test_an_environment_is_built_from_a_wheelhouse_and_then_reused(
        tmp_path: Path, wheelhouse: Path) -> None:
    # Given a requirements file naming a package only the wheelhouse holds
    envs = tmp_path / "envs"
    requirements = _requirements(tmp_path, "tinydep==1.0\n")

    # When an environment is asked for twice
    python = environment_python(envs, requirements, BASE_PYTHON, timeout_s=300)
    again_started = time.monotonic()
    again = environment_python(envs, requirements, BASE_PYTHON, timeout_s=300)
    again_s = time.monotonic() - again_started

    # Then its python imports the package, and the second ask built nothing
    printed = subprocess.run([str(python), "-c", "import tinydep; print(tinydep.VALUE)"],
                             capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "42"
    assert again == python
    assert python.parent.parent.parent == envs
    assert _builds(envs) == 1
    assert again_s < 1.0
    assert "Successfully installed tinydep-1.0" in next(envs.glob("*.log")).read_text()
    assert not list(envs.glob(".*"))  # no staging folder left behind


def test_a_bad_requirement_fails_with_pips_reason_and_is_remembered(
        tmp_path: Path, wheelhouse: Path) -> None:
    # Given a requirement no index holds
    envs = tmp_path / "envs"
    requirements = _requirements(tmp_path, "nosuchpkgzz==1\n")

    # When it is asked for
    with pytest.raises(EnvironmentFailed) as first:
        environment_python(envs, requirements, BASE_PYTHON, timeout_s=300)

    # Then the reason is pip's last lines
    assert first.value.reason.startswith("environment could not be built: ")
    assert "No matching distribution found for nosuchpkgzz==1" in first.value.reason
    assert not [path for path in envs.iterdir() if path.is_dir()]  # nothing half-built kept

    # And asking again fails at once, with the same reason, without running pip
    started = time.monotonic()
    with pytest.raises(EnvironmentFailed) as second:
        environment_python(envs, requirements, BASE_PYTHON, timeout_s=300)
    assert time.monotonic() - started < 0.5
    assert second.value.reason == first.value.reason
    assert _builds(envs) == 1

    # And a changed file is a new environment, built afresh
    requirements.write_text("tinydep==1.0\n")
    assert environment_python(envs, requirements, BASE_PYTHON, timeout_s=300).exists()
    assert _builds(envs) == 2


def test_concurrent_askers_wait_for_one_build(tmp_path: Path, wheelhouse: Path) -> None:
    # Given four threads asking for the same environment at once
    envs = tmp_path / "envs"
    requirements = _requirements(tmp_path, "tinydep==1.0\n")

    with ThreadPoolExecutor(4) as pool:
        pythons = list(pool.map(
            lambda _: environment_python(envs, requirements, BASE_PYTHON, timeout_s=300),
            range(4)))

    # Then all got the same python, and one build ran
    assert len(set(pythons)) == 1
    assert _builds(envs) == 1


def test_a_build_past_its_time_limit_is_killed_and_fails(tmp_path: Path,
                                                        wheelhouse: Path) -> None:
    # Given a time limit shorter than making a venv with pip takes
    envs = tmp_path / "envs"
    requirements = _requirements(tmp_path, "tinydep==1.0\n")

    # When it is asked for, it fails saying so, soon after the limit
    started = time.monotonic()
    with pytest.raises(EnvironmentFailed, match=r"timed out after 0\.2 s"):
        environment_python(envs, requirements, BASE_PYTHON, timeout_s=0.2)
    assert time.monotonic() - started < 10


def test_a_missing_requirements_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentFailed, match="cannot read the requirements file"):
        environment_python(tmp_path / "envs", tmp_path / "nope.txt", BASE_PYTHON)


@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_a_sandboxed_build_reads_its_tree_and_wheelhouse_and_nothing_else(
        tmp_path: Path, wheelhouse: Path, sandbox: str) -> None:
    # Given a code tree whose requirements include a file outside it (as a package's build
    # code could read any file the worker can: pip runs an sdist's setup.py)
    outside = tmp_path / "outside" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("tinydep==1.0\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    requirements = tree / "requirements.txt"
    requirements.write_text(f"-r {outside}\n")
    settings = make_settings(tmp_path / "data", SWEEPLAB_SANDBOX=sandbox)
    build = functools.partial(build_view, settings, tree)
    # When its environment is built through the build view
    if sandbox == "off":  # Then without the sandbox pip reads it (the probe is real) ...
        python = environment_python(tmp_path / "envs", requirements, BASE_PYTHON, 300, build)
        assert python.exists()
        return
    with pytest.raises(EnvironmentFailed) as failed:  # ... and in it, it cannot
        environment_python(tmp_path / "envs", requirements, BASE_PYTHON, 300, build)
    assert "secret.txt" in failed.value.reason


def test_a_sandboxed_build_installs_from_the_wheelhouse(tmp_path: Path, wheelhouse: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "requirements.txt").write_text("tinydep==1.0\n")
    settings = make_settings(tmp_path / "data", SWEEPLAB_SANDBOX="on")
    python = environment_python(tmp_path / "envs", tree / "requirements.txt", BASE_PYTHON, 300,
                                functools.partial(build_view, settings, tree))
    printed = subprocess.run([str(python), "-c", "import tinydep; print(tinydep.VALUE)"],
                             capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "42"
