"""The benchmarks run (on tiny sizes). Their figures are never asserted here: timing belongs
in bench/RESULTS.md, not in the test suite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e_support import ROOT

pytestmark = pytest.mark.e2e


def test_every_benchmark_runs_and_reports(tmp_path):
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text()
    for name in ("sweep overhead", "dispatch: POST to the script starting", "upload: one",
                 "upload: 50 small images", "a fresh journaled ext4", "API under load",
                 "memory: idle API",
                 "memory: idle worker", "scaling: growth across sizes [SQLite]",
                 "scaling: growth across sizes [PostgreSQL]", "polling: an unchanged",
                 "big: create a 200-point experiment [PostgreSQL]", "big: delete a model with",
                 "big page: the 200-run experiment's live fragment [PostgreSQL]",
                 "remote: cold snapshot", "remote: warm snapshot", "HTTP path against",
                 "early stopping: median rule", "early stopping: successive halving rule",
                 "predict: warm, one image per request", "predict: cold batch of",
                 "sandbox: start of `python -c pass`"):
        assert name in report, name
    assert report.count("| PASS |") + report.count("| FAIL |") >= 16
