"""A stand-in training script that notes when it started and ended (for dispatch latency)."""

import os
import time
from pathlib import Path

Path("started.txt").write_text(repr(time.time()))
time.sleep(float(os.environ.get("BENCH_SLEEP", "0.2")))
print("accuracy: 0.5")
Path("ended.txt").write_text(repr(time.time()))
