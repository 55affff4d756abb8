"""Train a multilayer perceptron on a folder of labelled images; print its accuracy.

    python train.py --i LEARNING_RATE --j LAYERS --k STEPS --images DIR

DIR holds one folder per label (`DIR/7/img001.png`); files elsewhere are ignored. The images are
read with Pillow as greyscale, resized to a common square and scaled to [0, 1]. A scikit-learn
MLPClassifier with J hidden layers of 64 units, learning rate I (Adam), is trained for exactly K
mini-batch steps on 80% of the images and scored on the other 20% (stratified). The run's seed
(SWEEPLAB_SEED, default 0) draws that split, the initial weights and the mini-batches. The
model is saved as `model.joblib` in the working directory, and the last line printed is a dict:
{'i': '0.01', 'j': '2', 'k': '1000', 'images': 'DIR', 'accuracy': 0.97}
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

MODEL_FILE = "model.joblib"
SIDE = 8  # the side images are resized to: the bundled digits are 8 x 8 scans
HIDDEN_UNITS = 64
BATCH_SIZE = 32
STEPS_PER_CALL = 200  # partial_fit takes one step per batch it is given: batch the calls
# The run's seed (`repeats` in an experiment gives each repeat its own): it draws the held-out
# images, the initial weights and the mini-batches. With the held-out images fixed, repeats
# measured only the optimiser's noise, and on the digits' 356 held-out images well-trained
# models miss the same few hard ones: seeds 0-2 of i=0.01 j=4 k=2000 all scored 0.974719.
# Configurations still compare on the same images within one seed.
SEED = int(os.environ.get("SWEEPLAB_SEED", "0"))


def load_image(path: Path, side: int = SIDE) -> np.ndarray:
    with Image.open(path) as image:
        grey = image.convert("L").resize((side, side), Image.Resampling.BILINEAR)
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


def split(features: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    counts = np.unique(labels, return_counts=True)[1]
    stratify = labels if counts.min() >= 2 else None
    return train_test_split(features, labels, test_size=0.2, random_state=SEED,
                            stratify=stratify)


def train(x: np.ndarray, y: np.ndarray, rate: float, layers: int, steps: int,
          report: Callable[[int, MLPClassifier], None]) -> MLPClassifier:
    """`steps` mini-batch steps; `report(step, model)` after every STEPS_PER_CALL of them."""
    model = MLPClassifier(hidden_layer_sizes=(HIDDEN_UNITS,) * layers, learning_rate_init=rate,
                          batch_size=BATCH_SIZE, shuffle=False, random_state=SEED)
    classes = np.unique(y)
    rng = np.random.default_rng(SEED)
    done = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a diverging learning rate is a result, not a crash
        while done < steps:
            calls = min(STEPS_PER_CALL, steps - done)
            batch = rng.integers(0, len(x), BATCH_SIZE * calls)
            model.partial_fit(x[batch], y[batch], classes=classes)
            done += calls
            report(done, model)
    return model


def save(model: MLPClassifier, args: argparse.Namespace) -> None:
    temporary = Path(f".{MODEL_FILE}.tmp")
    joblib.dump({"model": model, "side": SIDE, "i": args.i, "j": args.j, "k": args.k}, temporary)
    os.replace(temporary, MODEL_FILE)  # a reader never sees a half-written model


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """--i, --j, --k: the grid point, shared with test.py."""
    parser.add_argument("--i", type=float, required=True, help="learning rate")
    parser.add_argument("--j", type=int, required=True, help="hidden layers")
    parser.add_argument("--k", type=int, required=True, help="mini-batch steps")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_arguments(parser)
    parser.add_argument("--images", type=Path, required=True, help="one folder per label")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    features, labels = load_folder(args.images)
    x_train, x_test, y_train, y_test = split(features, labels)
    print(f"training on {len(x_train)} images, scoring on {len(x_test)}, "
          f"{len(np.unique(labels))} labels", flush=True)
    def report(step: int, model: MLPClassifier) -> None:  # a point of the learning curve
        print({"step": step, "accuracy": round(float(model.score(x_test, y_test)), 6)},
              flush=True)

    model = train(x_train, y_train, args.i, args.j, args.k, report)
    accuracy = float(model.score(x_test, y_test))
    save(model, args)
    print({"i": str(args.i), "j": str(args.j), "k": str(args.k), "images": str(args.images),
           "accuracy": round(accuracy, 6)})


if __name__ == "__main__":
    main()
