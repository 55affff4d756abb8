"""Warm predictions: one long-lived test script per model, for scripts that opt in.

Starting Python and importing scikit-learn costs a cold prediction about a second; a warm
process pays it once. The protocol (README, "The script contract"):
- the script opts in with a line `# sweeplab: serve` in its text; a script without it is
  never started with `--serve` (an argparse script would exit 2 on the unknown flag);
- `test.py --serve --i I --j J --k K` runs in the best run's folder and prints
  `{"sweeplab_serve": 1}` once ready (its model loaded);
- then, per line on standard input (an image path), it prints one dict line: the same dict
  its one-shot mode prints last, or `{"error": "..."}` for an image it cannot label. Lines
  that are not dicts are allowed; they are kept as that prediction's `stdout`.

The pool keeps at most one process per model, serves one request at a time through it, and
starts a fresh one when the best run or the script changes, when it died, or after a timeout.
Anything unexpected kills the process; a request that holds it may then take a new one for the
rest of its images (`Held.live`), and predicts cold only when none starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.core.tables import Run
from service.execution.command import Entry, last_lines, params_env, script_env, serve_argv
from service.execution.parsing import parse_dict_line
from service.execution.sandbox import Launch, launch_command
from service.execution.scripts import ScriptKey, script_key
from service.execution.supervise import kill_group
from service.execution.views import warm_predict_view
from service.settings import Settings

log = logging.getLogger("sweeplab.warm")
SERVE_MARKER = re.compile(r"^[ \t]*#[ \t]*sweeplab:[ \t]*serve\b", re.MULTILINE)
READY_KEY = "sweeplab_serve"
MARKER_SCAN_BYTES = 1 << 20
LINE_LIMIT = 64 * 1024  # the longest line we read; past it the process is dropped
STDOUT_KEEP = 64 * 1024  # of one prediction's `stdout`, the tail kept
STDERR_KEEP = 8 * 1024  # of the process's standard error, the tail kept for the log
RETRY_AFTER_S = 60.0  # after a failed start, the same run and script predict cold this long
MAX_WARM = 4  # processes alive at once; past it the least recently used idle one is stopped


# What a warm process serves beside its run: the interpreter and the script's version (its path,
# inside a code version's tree for uploaded code, so a new version is a new key)
WarmKey = tuple[str, ScriptKey]


def script_env_for(run: Run, entry: Entry) -> dict[str, str]:
    """A test script's environment: the API's less secrets, the run, its parameters as JSON
    (SWEEPLAB_PARAMS, as training gets them) and its code tree on PYTHONPATH."""
    return {**script_env(run.id), **params_env(run.params), **entry.env()}


def warm_key(entry: Entry) -> WarmKey | None:
    key = script_key(entry.script)
    return None if key is None else (entry.python, key)


class WarmBroken(Exception):
    """The process did not start, died, or broke the protocol; it has been killed."""


class WarmTimeout(Exception):
    """The process outlived the time limit on one image; it has been killed."""


@dataclass(frozen=True)
class Reply:
    output: dict[str, Any]
    stdout: str
    duration_s: float


def opts_in(script: Path) -> bool:
    """Whether the script declares the serve protocol (`# sweeplab: serve` on a line)."""
    try:
        with open(script, "rb") as handle:
            text = handle.read(MARKER_SCAN_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    return SERVE_MARKER.search(text) is not None


class WarmProcess:
    """One running `test.py --serve`, in its own process group."""

    def __init__(self, run_id: int, key: WarmKey, process: asyncio.subprocess.Process,
                 launch: Launch | None = None) -> None:
        self.run_id = run_id
        self.launch = launch
        self.key = key
        self.process = process
        self.last_used = time.monotonic()
        self.stopping = False  # killed, or to be: never handed out again
        self._stderr = bytearray()
        self._drain = asyncio.create_task(self._drain_stderr())

    @classmethod
    async def start(cls, settings: Settings, run: Run, entry: Entry,
                    key: WarmKey) -> WarmProcess:
        """Start it and wait for its ready line (within the predict time limit)."""
        run_dir = settings.runs_dir / str(run.id)
        launch = launch_command(serve_argv(entry, run.params),
                                warm_predict_view(settings, entry, run_dir))
        try:
            process = await asyncio.create_subprocess_exec(
                *launch.command, cwd=run_dir, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, preexec_fn=launch.preexec, env=script_env_for(run, entry),
                limit=LINE_LIMIT)
        except OSError as error:
            await asyncio.to_thread(launch.ended)
            raise WarmBroken(f"could not start: {error}") from None
        warm = cls(run.id, key, process, launch)
        try:
            await warm._await_ready(settings.predict_timeout_s)
        except BaseException:
            await warm.stop()
            raise
        return warm

    def serves(self, run_id: int, key: WarmKey | None) -> bool:
        return self.run_id == run_id and self.key == key

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.stopping

    def stderr_tail(self, lines: int = 5) -> str:
        return last_lines(self._stderr.decode("utf-8", errors="replace"), lines)

    async def _drain_stderr(self) -> None:
        # Read standard error as it comes (a full pipe would block the script), keeping a tail.
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(4096):
            self._stderr += chunk
            del self._stderr[:-STDERR_KEEP]

    async def _await_ready(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    found = parse_dict_line(await self._line())
                    if found is not None and found.get(READY_KEY):
                        return
        except TimeoutError:
            raise WarmBroken(f"no ready line within {timeout_s:g} s") from None

    async def _line(self) -> str:
        assert self.process.stdout is not None
        try:
            raw = await self.process.stdout.readline()
        except ValueError:  # a line past LINE_LIMIT
            raise WarmBroken(f"printed a line longer than {LINE_LIMIT} bytes") from None
        if not raw:
            code = await self._exit_code()
            raise WarmBroken(f"exited (code {code}): {self.stderr_tail()}".rstrip(": "))
        return raw.decode("utf-8", errors="replace")

    async def _exit_code(self) -> int | None:
        with contextlib.suppress(TimeoutError):
            code = await asyncio.wait_for(self.process.wait(), 1.0)
            await asyncio.wait([self._drain], timeout=1.0)  # the rest of its stderr, for the log
            return code
        return None

    async def ask(self, image: Path, timeout_s: float) -> Reply:
        """Send one image path, read its result line; kill the process on any trouble."""
        started = time.monotonic()
        try:
            return await self._exchange(image, timeout_s, started)
        except TimeoutError:
            await self.stop()
            raise WarmTimeout(f"the test script timed out after {timeout_s:g} s") from None
        except WarmBroken:
            await self.stop()
            raise
        except asyncio.CancelledError:
            # The request went away mid-line: its answer would be read as the next one's.
            self.stopping = True
            kill_group(self.process.pid)
            raise

    async def _exchange(self, image: Path, timeout_s: float, started: float) -> Reply:
        assert self.process.stdin is not None
        printed = ""
        async with asyncio.timeout(timeout_s):
            try:
                self.process.stdin.write(f"{image}\n".encode())
                await self.process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                raise WarmBroken("its standard input is closed") from None
            while True:
                line = await self._line()
                printed = (printed + line)[-STDOUT_KEEP:]
                found = parse_dict_line(line)
                if found is not None:
                    self.last_used = time.monotonic()
                    return Reply(found, printed, round(time.monotonic() - started, 3))

    async def stop(self) -> None:
        """Kill the whole group (a script's own children too) and reap it."""
        if self.process.returncode is None or not self.stopping:
            # only before it is reaped (or on the first stop): a reaped group id may be reused
            kill_group(self.process.pid)
        self.stopping = True
        if self.process.returncode is None:
            await self.process.wait()
        if self.launch is not None:  # what is left in its sandbox goes too
            await asyncio.to_thread(self.launch.ended)
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    process: WarmProcess | None = None
    failed: tuple[int, WarmKey] | None = None  # the run and script that last failed to start
    failed_at: float = 0.0


class Held:
    """The model's warm process while one request holds its slot. A process that dies is
    replaced on the next `live()`, so one death costs a batch one start, not its rest cold."""

    def __init__(self, pool: WarmPool, slot: _Slot, run: Run, entry: Entry) -> None:
        self._pool = pool
        self._slot = slot
        self._run = run
        self._entry = entry
        self._process: WarmProcess | None = None  # what `_ready` gave: checked for run, script

    async def live(self) -> WarmProcess | None:
        """The process this request was given if still alive, else the pool's (a new one in
        place of one that died); None: predict cold (the script does not opt in, or no process
        started within the last RETRY_AFTER_S)."""
        if self._process is None or not self._process.alive:
            self._process = await self._pool._ready(self._slot, self._run, self._entry)
        return self._process


class WarmPool:
    """The warm processes of one API, by model id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._slots: dict[int, _Slot] = {}
        self._opt_in: dict[WarmKey, bool] = {}  # read again only when a script changed

    def _script_opts_in(self, entry: Entry, key: WarmKey) -> bool:
        if key not in self._opt_in:
            if len(self._opt_in) > 4 * MAX_WARM:  # old versions' answers: forget them
                self._opt_in.clear()
            self._opt_in[key] = opts_in(entry.script)
        return self._opt_in[key]

    @contextlib.asynccontextmanager
    async def process_for(self, model_id: int, run: Run, entry: Entry) -> AsyncIterator[Held]:
        """The model's warm process, held for this request alone (started, or replaced when it
        serves another run, script or code version, by the first `live()`)."""
        slot = self._slots.setdefault(model_id, _Slot())
        async with slot.lock:
            yield Held(self, slot, run, entry)

    async def _ready(self, slot: _Slot, run: Run, entry: Entry) -> WarmProcess | None:
        key = warm_key(entry)
        current = slot.process
        if current is not None and current.alive and current.serves(run.id, key):
            return current
        if current is not None:
            log.info("stopping the warm test script of run %s (pid %s): %s", current.run_id,
                     current.pid, _why_replaced(current, run.id, key))
            await current.stop()
            slot.process = None
        if key is None or not self._script_opts_in(entry, key):
            return None
        if slot.failed == (run.id, key) and time.monotonic() - slot.failed_at < RETRY_AFTER_S:
            return None
        await self._make_room()
        try:
            slot.process = await WarmProcess.start(self.settings, run, entry, key)
        except WarmBroken as error:
            log.warning("the warm test script of run %s did not start (%s); predicting cold",
                        run.id, error)
            slot.failed, slot.failed_at = (run.id, key), time.monotonic()
            return None
        slot.failed = None
        log.info("warm test script of run %s started (pid %s)", run.id, slot.process.pid)
        return slot.process

    async def _make_room(self) -> None:
        idle = [slot for slot in self._slots.values()
                if slot.process is not None and not slot.lock.locked()]
        running = sum(slot.process is not None for slot in self._slots.values())
        excess = max(0, running + 1 - MAX_WARM)
        for slot in sorted(idle, key=_last_used)[:excess]:
            if not slot.lock.locked():  # still idle
                async with slot.lock:
                    await self._stop_slot(slot, "too many warm processes")

    async def _stop_slot(self, slot: _Slot, why: str) -> None:
        if slot.process is not None:
            log.info("stopping the warm test script of run %s (pid %s): %s",
                     slot.process.run_id, slot.process.pid, why)
            await slot.process.stop()
            slot.process = None

    async def reap_idle(self) -> None:
        """Stop the processes unused for SWEEPLAB_PREDICT_IDLE_S, and the dead ones."""
        now = time.monotonic()
        for slot in list(self._slots.values()):
            if slot.process is None or slot.lock.locked():
                continue  # none, or serving a request
            async with slot.lock:  # a request arriving now waits for the stop, then starts anew
                if not slot.process.alive:
                    await self._stop_slot(slot, "it exited")
                elif now - slot.process.last_used > self.settings.predict_idle_s:
                    await self._stop_slot(slot, "idle")

    async def close(self) -> None:
        for slot in self._slots.values():
            if slot.process is not None:  # even one in use: the app is going away
                await slot.process.stop()
                slot.process = None

    def pids(self) -> dict[int, int]:
        """Model id -> pid of its live warm process (for tests and the benchmark)."""
        return {model_id: slot.process.pid for model_id, slot in self._slots.items()
                if slot.process is not None and slot.process.alive}


def _last_used(slot: _Slot) -> float:
    return slot.process.last_used if slot.process is not None else 0.0


def _why_replaced(process: WarmProcess, run_id: int, key: WarmKey | None) -> str:
    if not process.alive:
        return "it exited"
    if process.run_id != run_id:
        return f"the best run is now {run_id}"
    return "the test script changed"


async def reap_forever(pool: WarmPool, settings: Settings) -> None:
    """Stop processes idle past SWEEPLAB_PREDICT_IDLE_S, for as long as the pool lives."""
    interval = max(0.5, min(30.0, settings.predict_idle_s / 4))
    while True:
        await asyncio.sleep(interval)
        try:
            await pool.reap_idle()
        except Exception:  # a bad pass must not stop the reaper
            log.exception("reaping idle warm test scripts failed")
