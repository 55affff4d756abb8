"""The layer rules as the running code sees them (import-linter checks the source): a remote
worker's process loads no database code at all."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e_support import ROOT

LOADED = """
import sys
import actors
bad = sorted(name for name in sys.modules
             if name.split(".")[0] in ("peewee", "playhouse", "psycopg2")
             or name in ("service.core.db", "service.core.tables", "actors.stores.local"))
print(type(actors.train).__name__, bad)
"""


def test_a_remote_worker_loads_no_database_module(tmp_path):
    env = {**os.environ, "SWEEPLAB_BROKER_URL": "stub://", "SWEEPLAB_DATA_DIR": str(tmp_path),
           "SWEEPLAB_API_URL": "http://127.0.0.1:9", "SWEEPLAB_WORKER_TOKEN": "t" * 32}
    done = subprocess.run([sys.executable, "-c", LOADED], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Actor []"


def test_a_local_worker_loads_the_database_and_the_aggregate_actor(tmp_path):
    env = {**os.environ, "SWEEPLAB_BROKER_URL": "stub://", "SWEEPLAB_DATA_DIR": str(tmp_path)}
    env.pop("SWEEPLAB_API_URL", None)
    script = LOADED + "print(type(actors.aggregate).__name__)\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "service.core.db" in done.stdout and done.stdout.split()[-1] == "Actor"
