"""The deployment, tested the honest way: a fresh Debian 12 booted under its own systemd
(systemd-nspawn) and provisioned offline by scripts/provision.sh from a wheelhouse.

The tests run in order on one machine (module fixture `api_host`): the provisioned service passes
scripts/api_test.sh within the memory budget; a worker killed mid-sweep is started again by systemd
and the sweep ends whole; after a power-off the machine comes back by itself with its data; a
second provisioning changes nothing; and a second machine provisioned as a worker, joined to the
first by a veth pair, takes runs. The image is built once and cached (tests/boot_support.py,
scripts/build_boot_image.sh); a warm run boots three times and provisions three times.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot_support import (
    PROJECT_DIR,
    WHEELHOUSE,
    Api,
    Machine,
    Network,
    build_image,
    copy_project,
    copy_rootfs,
    require_tools,
)

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

UNITS = ("rabbitmq-server.service", "sweeplab-api.service", "sweeplab-worker.service")
MEMORY_LIMIT_MIB = 800
SAMPLE_DIR = "/root/sample_data"
VENV_PYTHON = "/opt/sweeplab/.venv/bin/python"
FINAL = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def image() -> tuple[Path, Path]:
    require_tools()
    return build_image()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Next to the cache (same file system), so a copy can share blocks where the fs allows.
    path = Path(tempfile.mkdtemp(prefix="sweeplab-boot-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def network(image: tuple[Path, Path]) -> Iterator[Network]:
    with Network() as net:
        yield net


def new_machine(role: str, image: tuple[Path, Path], workdir: Path, netns: str) -> Machine:
    rootfs, wheels = image
    name = f"swlb-{role}-{uuid.uuid4().hex[:6]}"
    root = workdir / name
    started = time.monotonic()
    copy_rootfs(rootfs, root)
    copy_project(root)
    print(f"{name}: root file system copied in {time.monotonic() - started:.0f} s")
    return Machine(name, root, netns, wheels, workdir / f"{name}.console.log")


def provision(machine: Machine, *args: str) -> str:
    started = time.monotonic()
    done = machine.run([f"{PROJECT_DIR}/scripts/provision.sh", *args, "--wheelhouse", WHEELHOUSE],
                       timeout=900)
    flags = " ".join(arg for arg in args if arg.startswith("--") or arg in ("all", "api", "worker"))
    print(f"{machine.name}: provision.sh {flags} took {time.monotonic() - started:.0f} s")
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def api_host(image: tuple[Path, Path], workdir: Path, network: Network) -> Iterator[Machine]:
    machine = new_machine("api", image, workdir, network.names[0])
    try:
        machine.boot()
        machine.provision_output = provision(machine, "--role", "all")
        yield machine
    finally:
        machine.close()


def env_file(machine: Machine) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in machine.read("/etc/sweeplab/sweeplab.env").splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip().strip("'\"") for key, value in pairs}


def api_of(machine: Machine) -> Api:
    token = env_file(machine).get("SWEEPLAB_API_TOKEN", "")
    assert token, "provision.sh wrote no SWEEPLAB_API_TOKEN"
    return Api(machine, token)


def wait_service(machine: Machine, timeout: float = 120) -> None:
    """Until the three units are active and /healthz answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        states = {unit: machine.is_active(unit) for unit in UNITS}
        health = machine.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              "http://127.0.0.1:8080/healthz"], check=False).stdout
        if set(states.values()) == {"active"} and health == "200":
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"service not up: {states}, /healthz {health!r}\n"
                                 + machine.sh("journalctl -n 80 --no-pager", check=False))
        time.sleep(1)


def wait_experiment(api: Api, experiment_id: int, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while (experiment := api.call("GET", f"/experiments/{experiment_id}"))["status"] not in FINAL:
        assert time.monotonic() < deadline, f"experiment still {experiment['counts']}"
        time.sleep(2)
    return experiment


def snapshot(api: Api) -> dict:
    """Every model, experiment and run as the API shows them (the parts that must not change)."""
    found = {}
    for model in api.call("GET", "/models")["models"]:
        experiments = api.call("GET", f"/models/{model['id']}/experiments")["experiments"]
        found[model["id"]] = {
            "name": model["name"], "images": model["image_count"],
            "experiments": {e["id"]: [(r["id"], r["status"], r["accuracy"], r["params"])
                                      for r in api.call("GET", f"/experiments/{e['id']}")["runs"]]
                            for e in experiments}}
    return found


class MemorySampler:
    """The memory of UNITS' cgroups, sampled from the host every `every` s; `peak` is the
    sample with the most resident memory in all."""

    def __init__(self, machine: Machine, every: float = 0.5) -> None:
        self.machine, self.every = machine, every
        self.peak: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> dict[str, tuple[int, int]]:
        return self.machine.unit_memory_kib(UNITS)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            sample = self.sample()
            if resident(sample) > resident(self.peak):
                self.peak = sample

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def resident(sample: dict[str, tuple[int, int]]) -> int:
    return sum(rss for rss, _ in sample.values())


def report(label: str, sample: dict[str, tuple[int, int]]) -> None:
    def mib(kib: int) -> str:
        return f"{kib / 1024:.0f} MiB"

    parts = ", ".join(f"{unit.removesuffix('.service')} {mib(rss)} ({mib(pss)})"
                      for unit, (rss, pss) in sample.items())
    print(f"memory {label}, resident (proportional): {mib(resident(sample))} "
          f"({mib(sum(pss for _, pss in sample.values()))}): {parts}")


def test_provisioned_host_passes_the_api_walk_within_memory(api_host: Machine) -> None:
    # Given a fresh Debian 12 provisioned with --role all
    for unit in UNITS:
        assert api_host.is_active(unit) == "active", api_host.sh(f"systemctl status {unit}",
                                                                 check=False)
    wait_service(api_host)
    api = api_of(api_host)
    api_host.run([VENV_PYTHON, "/opt/sweeplab/scripts/make_sample_data.py", SAMPLE_DIR])
    time.sleep(3)
    idle = MemorySampler(api_host).sample()
    report("idle", idle)

    # When scripts/api_test.sh runs the demo sweep with our train.py
    with MemorySampler(api_host) as sampler:
        done = api_host.run(["/opt/sweeplab/scripts/api_test.sh", "http://127.0.0.1:8080"],
                            env={"SWEEPLAB_API_TOKEN": api.token, "SAMPLE_DIR": SAMPLE_DIR,
                                 "PYTHON": VENV_PYTHON, "SWEEP_TIMEOUT_S": "900"}, timeout=1200)

    # Then every step passed, and the three units stayed under the budget at their peak
    assert "All API steps passed" in done.stdout, done.stdout[-3000:]
    report("at the sweep's peak", sampler.peak)
    assert resident(sampler.peak) > resident(idle)
    assert resident(sampler.peak) < MEMORY_LIMIT_MIB * 1024


PROBE = """import json, socket
def opens(path):
    try:
        open(path, "rb").read(1)
        return True
    except OSError:
        return False
def connects(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False
reached = {"env_file": opens("/etc/sweeplab/sweeplab.env"),
           "database": opens("/var/lib/sweeplab/sweeplab.db"),
           "metadata": connects("169.254.169.254", 80)}
print("PROBE " + json.dumps(reached))
print({"accuracy": 1.0})
"""


def test_scripts_reach_neither_the_secrets_nor_the_instance_metadata(api_host: Machine) -> None:
    # Given the provisioned host, its sandbox on, and a stand-in for the cloud's instance
    # metadata on 169.254.169.254:80 that root on the host does reach
    assert env_file(api_host).get("SWEEPLAB_SANDBOX") == "on"
    assert (api_host.root / "var/lib/sweeplab/sweeplab.db").is_file()  # what the probe tries
    api_host.sh("ip addr add 169.254.169.254/32 dev lo 2>/dev/null || true; "
                "setsid python3 -m http.server 80 --bind 169.254.169.254 "
                ">/dev/null 2>&1 < /dev/null &")
    deadline = time.monotonic() + 30
    while api_host.run(["curl", "-s", "-o", "/dev/null", "http://169.254.169.254/"],
                       check=False).returncode != 0:
        assert time.monotonic() < deadline, "the metadata stand-in did not start"
        time.sleep(0.5)
    # When a model's own code probes them from a training run
    api = api_of(api_host)
    model = api.call("POST", "/models", {"name": "probe"}, expect=201)
    api_host.run([VENV_PYTHON, "-c", "import sys; from pathlib import Path; "
                  "[Path(sys.argv[1], d).mkdir(parents=True, exist_ok=True) for d in 'ab']",
                  "/root/probe-images"])
    for label in "ab":
        for n in range(2):
            shutil.copy(next((api_host.root / SAMPLE_DIR.lstrip("/") / "heldout").iterdir()),
                        api_host.root / "root" / "probe-images" / label / f"{n}.png")
    api_host.sh("cd /root/probe-images && tar cf /root/probe-images.tar a b")
    api.call("POST", f"/models/{model['id']}/images", expect=201,
             form={"images": "@/root/probe-images.tar"})
    (api_host.root / "root" / "probe-train.py").write_text(PROBE)
    api.call("POST", f"/models/{model['id']}/code", expect=201,
             form={"files": "@/root/probe-train.py;filename=train.py"})
    created = api.call("POST", f"/models/{model['id']}/experiments", {"grid": {"x": [1]}},
                       expect=201)
    done = wait_experiment(api, created["id"], timeout=300)
    # Then the run succeeded and reached none of them
    run = done["runs"][0]
    assert run["status"] == "succeeded", run
    logs = api_host.run(["curl", "-s", "-H", f"Authorization: Bearer {api.token}",
                         f"http://127.0.0.1:8080/api/v1/runs/{run['id']}/logs"]).stdout
    line = next(line for line in logs.splitlines() if line.startswith("PROBE "))
    assert json.loads(line[len("PROBE "):]) == {"env_file": False, "database": False,
                                                "metadata": False}, logs


def test_killed_worker_is_restarted_and_the_sweep_completes(api_host: Machine) -> None:
    # Given a default 27-run sweep under way
    api = api_of(api_host)
    model = api.call("POST", "/models", {"name": f"boot-kill-{uuid.uuid4().hex[:6]}"}, expect=201)
    api.call("POST", f"/models/{model['id']}/images", expect=201,
             form={"images": f"@{SAMPLE_DIR}/train.zip"})
    # reuse off: an earlier test trained this sweep on these images already
    experiment = api.call("POST", f"/models/{model['id']}/experiments", {"reuse": False},
                          expect=201)
    restarts = int(api_host.sh("systemctl show -p NRestarts --value sweeplab-worker"))
    deadline = time.monotonic() + 300
    while True:
        runs = api.call("GET", f"/experiments/{experiment['id']}")["runs"]
        running = [run["id"] for run in runs if run["status"] == "running"]
        if running and sum(run["status"] == "succeeded" for run in runs) >= 3:
            break
        failed = [run for run in runs if run["status"] not in ("queued", "running", "succeeded")]
        assert not failed and time.monotonic() < deadline, f"the sweep went wrong: {failed or runs}"
        time.sleep(0.3)

    # When the worker is killed, scripts and all
    api_host.run(["systemctl", "kill", "-s", "KILL", "sweeplab-worker"])

    # Then systemd starts it again, and the sweep ends with 27 results, none twice
    deadline = time.monotonic() + 60
    while int(api_host.sh("systemctl show -p NRestarts --value sweeplab-worker")) == restarts:
        assert time.monotonic() < deadline, "systemd did not restart the worker"
        time.sleep(0.5)
    done = wait_experiment(api, experiment["id"])
    assert done["status"] == "completed", done["counts"]
    params = [tuple(sorted(run["params"].items())) for run in done["runs"]]
    assert len(done["runs"]) == 27 and len(set(params)) == 27
    assert all(run["status"] == "succeeded" and run["accuracy"] is not None
               for run in done["runs"]), done["counts"]
    killed = [(run["id"], run["attempts"]) for run in done["runs"] if run["id"] in running]
    print(f"runs that were running when the worker was killed (id, attempts): {killed}")


def test_power_off_and_boot_again_keeps_everything(api_host: Machine) -> None:
    # Given the service with its models, experiments and results
    before = snapshot(api_of(api_host))
    assert before

    # When the machine is powered off and booted again
    print(f"{api_host.name}: powered off in {api_host.poweroff():.0f} s")
    api_host.boot()

    # Then the service comes back by itself, with every model, experiment and result
    wait_service(api_host)
    assert snapshot(api_of(api_host)) == before


def test_provision_again_changes_nothing(api_host: Machine) -> None:
    # Given a provisioned, running service
    api = api_of(api_host)
    before = snapshot(api)

    # When provision.sh runs a second time
    provision(api_host, "--role", "all")

    # Then the same token opens the same data, and the service is up
    wait_service(api_host)
    assert api_of(api_host).token == api.token
    assert snapshot(api) == before


def test_worker_machine_joined_by_a_veth_takes_runs(api_host: Machine, image: tuple[Path, Path],
                                                    workdir: Path, network: Network) -> None:
    # Given a second machine, provisioned with the worker command the API's host prints
    printed = api_host.run(["/opt/sweeplab/scripts/provision.sh",
                            "--print-worker-command"]).stdout.split()
    args = printed[printed.index("--role"):]
    assert f"http://{network.addresses[0]}:8080" in args, printed
    worker = new_machine("worker", image, workdir, network.names[1])
    try:
        worker.boot()
        provision(worker, *args)
        assert worker.is_active("sweeplab-worker.service") == "active"
        assert worker.is_active("sweeplab-api.service") != "active"

        # When the API's host has no worker of its own and a small sweep starts
        api_host.run(["systemctl", "stop", "sweeplab-worker"])
        api = api_of(api_host)
        model = api.call("POST", "/models", {"name": f"boot-remote-{uuid.uuid4().hex[:6]}"},
                         expect=201)
        api.call("POST", f"/models/{model['id']}/images", expect=201,
                 form={"images": f"@{SAMPLE_DIR}/train.zip"})
        grid = {"i": [0.01, 0.1], "j": [1, 2], "k": [100]}
        experiment = api.call("POST", f"/models/{model['id']}/experiments",
                              {"grid": grid, "reuse": False}, expect=201)

        # Then the worker machine takes every run, and the API knows it as a remote worker
        done = wait_experiment(api, experiment["id"], timeout=300)
        assert done["status"] == "completed", done["counts"]
        assert [run["status"] for run in done["runs"]] == ["succeeded"] * 4
        hosts = {(w["host"], w["remote"]) for w in api.call("GET", "/workers")["workers"]}
        assert (worker.name, True) in hosts, hosts
    finally:
        worker.close()
        api_host.run(["systemctl", "start", "sweeplab-worker"], check=False)
