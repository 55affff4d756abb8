"""Write scikit-learn's bundled handwritten digits (1,797 real 8x8 scans) as PNG files.

    python scripts/make_sample_data.py [OUT_DIR]     (default: ./sample_data)

OUT_DIR/train/<label>/<n>.png   the training images, one folder per label
OUT_DIR/train.zip               the same, zipped for upload
OUT_DIR/heldout/<label>_<n>.png a few images kept out of training, for predictions
Nothing is downloaded: the digits ship inside scikit-learn.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

HELD_OUT_PER_LABEL = 2


def to_png(pixels: np.ndarray, path: Path) -> None:
    grey = (pixels.reshape(8, 8) * (255 / 16)).round().astype(np.uint8)
    Image.fromarray(grey, mode="L").save(path, format="PNG")


def write_sample(out: Path) -> None:
    digits = load_digits()
    seen: dict[int, int] = {}
    train, heldout = out / "train", out / "heldout"
    for index, (pixels, label) in enumerate(zip(digits.data, digits.target, strict=True)):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= HELD_OUT_PER_LABEL:
            heldout.mkdir(parents=True, exist_ok=True)
            to_png(pixels, heldout / f"{label}_{index:04d}.png")
            continue
        folder = train / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        to_png(pixels, folder / f"{index:04d}.png")
    with zipfile.ZipFile(out / "train.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(train.rglob("*.png")):
            archive.write(file, file.relative_to(train).as_posix())


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "sample_data")
    write_sample(out)
    print(f"wrote {sum(1 for _ in (out / 'train').rglob('*.png'))} training images, "
          f"{sum(1 for _ in (out / 'heldout').glob('*.png'))} held-out images and "
          f"{out / 'train.zip'}")


if __name__ == "__main__":
    main()
