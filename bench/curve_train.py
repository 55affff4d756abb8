"""A stand-in training script with a learning curve, for the early-stopping benchmark.

Prints `step=100 accuracy=…` up to step 1000, one point every BENCH_STEP_S seconds, then the
final `{'accuracy': …}`. Configurations with j=1 are hopeless (flat at 0.05); the others rise
with the step, faster with a larger i, so the best is the largest i with j != 1. No noise: the
baseline and the early-stopped sweep must agree on the best.
"""

import os
import sys
import time

argv = sys.argv[1:]
args = {argv[n].lstrip("-"): argv[n + 1] for n in range(0, len(argv) - 1, 2)}
i, j = float(args["i"]), int(args["j"])
step_s = float(os.environ.get("BENCH_STEP_S", "0.3"))

value = 0.0
for step in range(100, 1100, 100):
    time.sleep(step_s)  # the "training" between two evaluations
    value = 0.05 if j == 1 else round(step / 1000 * (0.5 + i), 6)
    print(f"step={step} accuracy={value}", flush=True)
print({"accuracy": value})
