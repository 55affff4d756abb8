"""Predict the label of one image with the model `train.py` saved in the working directory.

    python test.py --i LEARNING_RATE --j LAYERS --k STEPS --image FILE

The last line printed is a dict:
{'i': '0.01', 'j': '2', 'k': '1000', 'image': 'FILE', 'label': '7', 'confidence': 0.98}

    python test.py --i LEARNING_RATE --j LAYERS --k STEPS --serve

loads the model once, prints {"sweeplab_serve": 1}, then reads one image path per line on
standard input and prints one such dict per line ({'error': '...'} for an image it cannot
read), until standard input closes. sweeplab keeps it running to answer predictions warm.
"""
# sweeplab: serve   (this line tells sweeplab the script speaks the --serve protocol above)

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import joblib

from train import MODEL_FILE, add_grid_arguments, load_image


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_arguments(parser)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--image", type=Path, help="the image to label")
    mode.add_argument("--serve", action="store_true",
                      help="label the image paths read from standard input, one per line")
    return parser.parse_args()


def load_model(args: argparse.Namespace) -> dict[str, Any]:
    if not Path(MODEL_FILE).is_file():
        sys.exit(f"error: no {MODEL_FILE} in {Path.cwd()}; run train.py here first")
    saved = joblib.load(MODEL_FILE)
    if (saved["i"], saved["j"], saved["k"]) != (args.i, args.j, args.k):
        print(f"warning: {MODEL_FILE} was trained with i={saved['i']} j={saved['j']} "
              f"k={saved['k']}", file=sys.stderr)
    return saved


def predict(args: argparse.Namespace, saved: dict[str, Any], image: str) -> dict[str, Any]:
    model = saved["model"]
    probabilities = model.predict_proba(load_image(Path(image), saved["side"]).reshape(1, -1))[0]
    best = int(probabilities.argmax())
    return {"i": str(args.i), "j": str(args.j), "k": str(args.k), "image": image,
            "label": str(model.classes_[best]), "confidence": round(float(probabilities[best]), 6)}


def serve(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    print(json.dumps({"sweeplab_serve": 1}), flush=True)
    for line in sys.stdin:
        image = line.rstrip("\r\n")
        try:
            result = predict(args, saved, image)
        except Exception as error:  # one bad image must not end the process: say so, go on
            result = {"image": image, "error": f"{type(error).__name__}: {error}"}
        print(result, flush=True)


def main() -> None:
    args = parse_args()
    saved = load_model(args)
    if args.serve:
        serve(args, saved)
    else:
        print(predict(args, saved, str(args.image)))


if __name__ == "__main__":
    main()
