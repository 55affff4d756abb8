"""A training script shaped like the assignment's original: hand-parsed flags, a sleep, noise,
and a Python dict as its last line. FAKE_TRAIN_MODE picks a misbehaviour for the tests."""

import math
import os
import random
import subprocess
import sys
import time

args = {}
argv = sys.argv[1:]
for n in range(0, len(argv), 2):
    args[argv[n].lstrip("-")] = argv[n + 1]

mode = os.environ.get("FAKE_TRAIN_MODE", "ok")
if mode == "env":
    print("environment:", " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
print("loading images from", args["images"])
print("epoch 1/3 loss=2.31")
time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0.05")))
if mode == "fail_j4" and args["j"] == "4":
    print("Traceback (most recent call last):\nValueError: layers must be < 4", file=sys.stderr)
    sys.exit(3)
if mode == "noacc":
    print("finished, but I forgot to say how well")
    sys.exit(0)
if mode == "hang":
    # A script with a child of its own: the whole group must die on a timeout or a cancel.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(600)
if mode == "curve":  # a learning curve, one point every FAKE_TRAIN_SLEEP seconds
    for step in range(100, 600, 100):
        print(f"step={step} accuracy={step / 1000}", flush=True)
        time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0.05")))
if mode == "smooth":  # a known smooth function of i, j, k: 1.0 at i=0.01, j=3, k=2500
    i, j, k = float(args["i"]), int(args["j"]), int(args["k"])
    accuracy = 1 - (math.log10(i) + 2) ** 2 / 4 - (j - 3) ** 2 / 16 - ((k - 2500) / 2500) ** 2 / 2
    print({"accuracy": accuracy})
    sys.exit(0)
if mode == "hopeless":  # configurations with j=1 never learn; the others rise, faster with i
    i, j = float(args["i"]), int(args["j"])
    for step in range(100, 1100, 100):
        value = 0.05 if j == 1 else step / 1000 * (0.5 + i)
        print(f"step={step} accuracy={value}", flush=True)
        time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0.05")))
    print({"accuracy": value})
    sys.exit(0)
if mode == "loss":  # an objective other than the accuracy: smaller i, smaller loss
    print({"i": args["i"], "loss": float(args["i"]) * 10})
    sys.exit(0)
accuracy = round(random.random(), 6)
if mode == "seeded":  # an accuracy the seed decides: j=2 is better by 0.05 on every seed
    seed = int(os.environ["SWEEPLAB_SEED"])
    accuracy = round(0.5 + 0.01 * seed + (0.05 if args["j"] == "2" else 0), 6)
with open("model.txt", "w") as handle:
    handle.write(f"{args['i']} {args['j']} {args['k']}\n")
print({"i": args["i"], "j": args["j"], "k": args["k"], "images": args["images"],
       "accuracy": accuracy})
