"""Run every benchmark and write bench/RESULTS.md:

    .venv/bin/python -m bench            # the full sizes (about 80 minutes on 2 cores)
    .venv/bin/python -m bench --quick    # tiny sizes, only to show they run (the test suite)

Each prints its figures against a baseline run in the same process and a PASS/FAIL against
its target; none of them is a timed assertion anywhere.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from bench import (
    big,
    big_page,
    dispatch,
    early_stopping,
    load,
    memory,
    polling,
    predict,
    remote,
    sandbox,
    scaling,
    sweep_overhead,
    upload,
)
from bench.common import BENCH, Result, machine

FULL = {"sweeps": ((1.0, 0.1), (2, 8, 9, 27), 3), "dispatch": 40, "upload": (300, 2000),
        "load": (32, 20.0), "memory": 1000, "scaling": (100, 1000, 10000),
        "polling": (10000, 200, 3), "big": 10000, "big_page": 10000,
        "remote": (1797, 1.0, 9, 3), "early_stopping": (32, 0.5, 2),
        "predict": (8, 32, 200, 3), "sandbox": 50}
QUICK = {"sweeps": ((0.05,), (4,), 1), "dispatch": 3, "upload": (2, 50),
         "load": (4, 1.0), "memory": 20, "scaling": (10, 20), "polling": (100, 5, 1), "big": 200,
         "big_page": 200,
         "remote": (40, 0.05, 2, 1),
         "early_stopping": (4, 0.05, 2),
         "predict": (2, 4, 10, 1), "sandbox": 3}


def run_all(sizes: dict) -> list[Result]:
    results = sweep_overhead.run(*sizes["sweeps"])
    results += dispatch.run(sizes["dispatch"])
    results += upload.run(*sizes["upload"])
    results += load.run(*sizes["load"])
    results += memory.run(sizes["memory"])
    results += scaling.run_both(sizes["scaling"])
    results += polling.run(*sizes["polling"])
    results += big.run_both(sizes["big"])
    results += big_page.run_both(sizes["big_page"])
    results += remote.run(*sizes["remote"])
    results += predict.run(*sizes["predict"])
    results += early_stopping.run(*sizes["early_stopping"])
    results += sandbox.run(sizes["sandbox"])
    return results


def report(results: list[Result], notes: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(f"| {r.benchmark} | {r.figure} | {r.target} | {r.verdict} |"
                     for r in results)
    return (f"# Benchmark results\n\nRun {when} with `.venv/bin/python -m bench` on: "
            f"{machine()}.\n\n| benchmark | figure | target | verdict |\n|---|---|---|---|\n"
            f"{rows}\n\n{notes}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check they run")
    parser.add_argument("--out", type=Path, help="where to write the report "
                        "(default: bench/RESULTS.md for a full run, nowhere for --quick)")
    args = parser.parse_args()
    results = run_all(QUICK if args.quick else FULL)
    notes_file = BENCH / "NOTES.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    out = args.out or (None if args.quick else BENCH / "RESULTS.md")
    if out:
        out.write_text(report(results, notes))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
