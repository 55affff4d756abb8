"""Train a support-vector classifier on a folder of labelled images; print its accuracy.

    python train.py --C 1.0 --gamma 0.01 --kernel rbf --images DIR

An example of a model's own code for sweeplab: its flags are its own (no --i --j --k), and
sweeplab.toml beside it gives the default grid. DIR holds one folder per label (`DIR/7/a.png`).
The images are read as greyscale 8 x 8, scaled to [0, 1]; 80% train the classifier, the other
20% score it (the run's seed, SWEEPLAB_SEED, draws the split). The model is saved as
`model.joblib`, and the last line printed is a dict holding the accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import joblib
import numpy as np
from PIL import Image
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

MODEL_FILE = "model.joblib"
SIDE = 8
SEED = int(os.environ.get("SWEEPLAB_SEED", "0"))


def load_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        grey = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float64).reshape(-1) / 255.0


def load_folder(images: Path) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            features.append(load_image(file))
            labels.append(folder.name)
    if len(set(labels)) < 2:
        sys.exit(f"error: {images} needs images in at least two label folders")
    return np.stack(features), np.array(labels)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The hyperparameters, shared with test.py (sweeplab passes each as `--NAME VALUE`)."""
    parser.add_argument("--C", type=float, required=True, help="regularisation strength")
    parser.add_argument("--gamma", type=float, required=True, help="kernel coefficient")
    parser.add_argument("--kernel", choices=("linear", "poly", "rbf", "sigmoid"), required=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--images", type=Path, required=True, help="one folder per label")
    args = parser.parse_args()
    features, labels = load_folder(args.images)
    counts = np.unique(labels, return_counts=True)[1]
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=SEED,
        stratify=labels if counts.min() >= 2 else None)
    # Calibrated on held-in folds, so test.py can say how confident a label is.
    classifier = SVC(C=args.C, gamma=args.gamma, kernel=args.kernel, random_state=SEED)
    model = CalibratedClassifierCV(classifier, ensemble=False).fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    temporary = Path(f".{MODEL_FILE}.tmp")
    joblib.dump(model, temporary)
    os.replace(temporary, MODEL_FILE)
    print({"C": args.C, "gamma": args.gamma, "kernel": args.kernel,
           "accuracy": round(accuracy, 6)})


if __name__ == "__main__":
    main()
