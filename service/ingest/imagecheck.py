"""Proving that a file is an image, with Pillow, within a pixel limit.

The caller usually has the bytes and their SHA-256 already (hashed while they were received or
unpacked): then Pillow reads them from memory and nothing is read back from the disk.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp", "TIFF": "tif",
              "WEBP": "webp", "PPM": "ppm"}


SMALL_FILE = 1 << 20

# The pixel limit is checked here, per call, right after the header is read and before any
# pixel is decoded; Pillow's own check is off. (It was a global limit turned into an error by a
# warnings filter: both process-wide state, which two uploads checked at once in two threads
# could change under each other.)
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class CheckedImage:
    path: Path
    sha256: str
    extension: str
    size_bytes: int
    width: int
    height: int


class NotAnImage(ValueError):
    """The file is not an image sweeplab accepts; the message says why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_checked(source: Path | BinaryIO, max_pixels: int) -> tuple[str, int, int]:
    with Image.open(source) as image:  # reads the header: no pixel is decoded yet
        kind, (width, height) = image.format or "", image.size
        if width * height > max_pixels:
            raise NotAnImage(f"{width}x{height} pixels is more than {max_pixels} "
                             f"(decompression bomb guard)")
        image.verify()
    return kind, width, height


def check_image(path: Path, max_pixels: int, data: bytes | None = None,
                sha256: str | None = None) -> CheckedImage:
    """Open and verify the file (or `data`, its bytes, when the caller has them; `sha256`,
    their digest, when known); raise `NotAnImage` with a reason a person can act on."""
    size = len(data) if data is not None else path.stat().st_size
    if data is None and sha256 is None and size <= SMALL_FILE:
        data = path.read_bytes()  # read once, for Pillow and the hash alike
    try:
        kind, width, height = _open_checked(io.BytesIO(data) if data is not None else path,
                                            max_pixels)
    except NotAnImage:
        raise
    except UnidentifiedImageError:
        raise NotAnImage("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise NotAnImage(f"damaged image: {error}") from None
    if kind not in EXTENSIONS:
        raise NotAnImage(f"image format {kind or 'unknown'} is not accepted; "
                         f"accepted: {', '.join(sorted(EXTENSIONS))}")
    if sha256 is None:
        sha256 = hashlib.sha256(data).hexdigest() if data is not None else sha256_of(path)
    return CheckedImage(path, sha256, EXTENSIONS[kind], size, width, height)
