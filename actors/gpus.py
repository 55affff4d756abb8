"""`SWEEPLAB_GPUS`: each worker thread owns one GPU, so two runs never share one.

A thread takes a GPU from the pool the first time it trains and keeps it for its life; the
scripts it starts see only that GPU (`CUDA_VISIBLE_DEVICES`). Without the setting, scripts see
whatever the host has, as before.
"""

from __future__ import annotations

import threading

_pool: list[str] = []
_lock = threading.Lock()
_owned = threading.local()


def configure(gpus: tuple[str, ...], threads: int) -> None:
    """Set the pool at worker start; refuse a worker with more threads than GPUs."""
    if gpus and threads > len(gpus):
        raise SystemExit(f"sweeplab worker refuses to start: {threads} threads but only "
                         f"{len(gpus)} GPU(s) in SWEEPLAB_GPUS ({','.join(gpus)}); run "
                         f"--threads {len(gpus)} or name more GPUs")
    with _lock:
        _pool[:] = list(gpus)


def gpu_env() -> dict[str, str]:
    """The environment that pins this thread's scripts to its GPU (empty without GPUs)."""
    gpu = getattr(_owned, "gpu", None)
    if gpu is None:
        with _lock:
            if not _pool:
                return {}
            gpu = _owned.gpu = _pool.pop(0)
    return {"CUDA_VISIBLE_DEVICES": gpu}

