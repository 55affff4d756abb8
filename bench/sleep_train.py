"""A stand-in training script for benchmarks: sleeps BENCH_SLEEP seconds, prints an accuracy."""

import os
import sys
import time

time.sleep(float(os.environ.get("BENCH_SLEEP", "1")))
print(f"args {sys.argv[1:]}")
print("accuracy: 0.5")
