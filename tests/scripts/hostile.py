"""A hostile script: as a training run (`--images DIR`), a cold prediction (`--image PATH`) or a
warm one (`--serve`, when a copy of it carries the serve marker), it tries what the sandbox must
stop and prints, as its last line, a dict of what it managed: `{"probes": {name: True when it
got through}, "accuracy": 0.5}`.

`--j` picks the training mode: 1 probes, 2 a fork bomb left to fail, 3 an allocation past the
memory limit left to fail, 4 a plain run. HOSTILE_HARMLESS=1 skips what would hurt the worker
when nothing contains the script (killing its parent, the fork bomb)."""

import json
import os
import signal
import sys
import time
from pathlib import Path

DATA = Path.cwd().absolute().parent.parent  # it runs in <data dir>/runs/<run id>
RUN_ID = os.environ.get("SWEEPLAB_RUN_ID", "")
SECRET = b"SWEEPLAB_WORKER_TOKEN="  # never in a script's environment: only its parents hold it


def arguments() -> dict:
    args, argv = {}, sys.argv[1:]
    for n, word in enumerate(argv):
        if word.startswith("--"):
            following = argv[n + 1] if n + 1 < len(argv) else ""
            args[word[2:]] = "" if following.startswith("--") else following
    return args


def got(attempt) -> bool:
    try:
        return bool(attempt())
    except (OSError, MemoryError):
        return False


def read_other_environ() -> bool:
    """Any process's environment holding what ours does not: the API's or the worker's."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            if got(lambda entry=entry: SECRET in (entry / "environ").read_bytes()):
                return True
    return False


def other_run_folders() -> bool:
    return any(name != RUN_ID for name in os.listdir(DATA / "runs"))


def write_into(folder: Path) -> bool:
    target = folder / "hostile-was-here"
    with open(target, "w") as handle:
        handle.write("x")
    target.unlink()
    return True


def kill_parent() -> bool:
    """Whether the parent is gone after a SIGKILL (in a PID namespace it is the namespace's
    init, which no signal from inside reaches)."""
    parent = os.getppid()
    os.kill(parent, signal.SIGKILL)
    time.sleep(0.3)
    return os.getppid() != parent or not Path(f"/proc/{parent}").exists()


def forks(limit: int = 2000) -> int:
    """Children that sleep, until a fork fails or `limit`; they are killed after the count."""
    children = []
    try:
        for _ in range(limit):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
    except OSError:
        pass
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return len(children)


def probes(args: dict, harmless: bool) -> dict:
    found = {
        "database": got(lambda: (DATA / "sweeplab.db").read_bytes()[:16]),
        "up_two": got(lambda: Path("../../sweeplab.db").read_bytes()[:16]),
        "other_runs": got(other_run_folders),
        "images_store": got(lambda: os.listdir(DATA / "images")),
        "parent_environ": got(lambda: SECRET in Path(
            f"/proc/{os.getppid()}/environ").read_bytes()),
        "any_environ": read_other_environ(),
        "etc_sweeplab": got(lambda: os.listdir("/etc/sweeplab")),
        "write_script": got(lambda: open(__file__, "ab").close() or True),
        "write_images": got(lambda: write_into(Path(args["images"]))) if "images" in args
        else got(lambda: open(args["image"], "ab").close() or True),
        "allocate_past_limit": got(lambda: bytearray(1 << 30)),
    }
    if not args.get("images"):  # a prediction: the best run's folder is read-only to it
        found["write_run_folder"] = got(lambda: write_into(Path.cwd()))
    if not harmless:
        found["kill_parent"] = got(kill_parent)
        found["forks"] = forks()
    return found


def serve(args: dict) -> None:
    print(json.dumps({"sweeplab_serve": 1}), flush=True)
    for line in sys.stdin:
        image = line.strip()
        print(json.dumps({"image": image, "label": "7",
                          "probes": probes({**args, "image": image}, True)}), flush=True)


def main() -> None:
    args = arguments()
    harmless = os.environ.get("HOSTILE_HARMLESS") == "1"
    if "serve" in args:
        return serve(args)
    mode = args.get("j", "1")
    if mode == "2":
        while True:  # a fork bomb: its children loop on too, until a fork fails
            os.fork()
    if mode == "3":
        hoard = [bytearray(64 << 20) for _ in range(1 << 10)]
        print(len(hoard))
    found = probes(args, harmless) if mode == "1" else {}
    print(json.dumps({"image": args.get("image", ""), "label": "7", "probes": found,
                      "accuracy": 0.5}))


if __name__ == "__main__":
    main()
