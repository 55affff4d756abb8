"""Label one image with the classifier train.py saved in the working directory.

    python test.py --C 1.0 --gamma 0.01 --kernel rbf --image FILE

The last line printed is a dict: {'image': 'FILE', 'label': '7', 'confidence': 0.98}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import joblib

from train import MODEL_FILE, add_model_arguments, load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--image", type=Path, required=True, help="the image to label")
    args = parser.parse_args()
    if not Path(MODEL_FILE).is_file():
        sys.exit(f"error: no {MODEL_FILE} in {Path.cwd()}; run train.py here first")
    model = joblib.load(MODEL_FILE)
    probabilities = model.predict_proba(load_image(args.image).reshape(1, -1))[0]
    best = int(probabilities.argmax())
    print({"image": str(args.image), "label": str(model.classes_[best]),
           "confidence": round(float(probabilities[best]), 6)})


if __name__ == "__main__":
    main()
