"""Predict the label of one image with the model `train.py` saved in the working directory.

    python test.py --i LEARNING_RATE --j LAYERS --k STEPS --image FILE

The last line printed is a dict:
{'i': '0.01', 'j': '2', 'k': '1000', 'image': 'FILE', 'label': '7', 'confidence': 0.98}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import joblib

from train import MODEL_FILE, add_grid_arguments, load_image


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_arguments(parser)
    parser.add_argument("--image", type=Path, required=True, help="the image to label")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not Path(MODEL_FILE).is_file():
        sys.exit(f"error: no {MODEL_FILE} in {Path.cwd()}; run train.py here first")
    saved = joblib.load(MODEL_FILE)
    if (saved["i"], saved["j"], saved["k"]) != (args.i, args.j, args.k):
        print(f"warning: {MODEL_FILE} was trained with i={saved['i']} j={saved['j']} "
              f"k={saved['k']}", file=sys.stderr)
    model = saved["model"]
    probabilities = model.predict_proba(load_image(args.image, saved["side"]).reshape(1, -1))[0]
    best = int(probabilities.argmax())
    print({"i": str(args.i), "j": str(args.j), "k": str(args.k), "image": str(args.image),
           "label": str(model.classes_[best]), "confidence": round(float(probabilities[best]), 6)})


if __name__ == "__main__":
    main()
