"""Decode face images to fixed-size uint8 arrays (no torch: runs in worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# A face crop larger than this is not a face crop; refusing it keeps a decompression
# bomb from eating the memory of a training run.
_MAX_PIXELS = 4096 * 4096


def decode_face(path: str | Path, size: int) -> np.ndarray:
    """The image at ``path`` as a (size, size, 3) uint8 RGB array.

    A non-square image is centre-cropped to a square first, then resized with
    Lanczos. Raises ``OSError``/``ValueError`` (with Pillow's reason) when the file
    cannot be decoded, and ``ValueError`` when it is implausibly large.
    """
    with Image.open(path) as im:
        if im.width * im.height > _MAX_PIXELS:
            raise ValueError(f"{im.width}×{im.height} pixels is too large for a face crop")
        im = im.convert("RGB")
        side = min(im.width, im.height)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        if side != im.width or side != im.height:
            im = im.crop((left, top, left + side, top + side))
        if side != size:
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8).copy()


def decode_many(paths: list[str], size: int) -> list[np.ndarray | str]:
    """Decode each path; a failure becomes the error message string instead of an array."""
    out: list[np.ndarray | str] = []
    for p in paths:
        try:
            out.append(decode_face(p, size))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out
