"""A prediction script shaped like the assignment's: hand-parsed flags, a dict as last line."""

import sys

args = {}
argv = sys.argv[1:]
for n in range(0, len(argv), 2):
    args[argv[n].lstrip("-")] = argv[n + 1]
with open("model.txt") as handle:
    trained = handle.read().split()
print("model trained with", trained)
print({"i": args["i"], "j": args["j"], "k": args["k"], "image": args["image"], "label": "7",
       "accuracy": 0.5})
