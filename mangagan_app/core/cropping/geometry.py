"""Box maths for cropping: which scales to detect at, merging hits, the crop square.

Boxes are ``(x, y, width, height)`` in integer pixels. Nothing here touches the
detector, so it is cheap to test exhaustively.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]

# The detector scans faces from about this width up; below it finds nothing.
DETECTOR_MIN_FACE_PX = 45
# Below this the detector's work is pointless: no face of min size fits.
_MIN_PASS_SIDE = 64


def detection_scales(
    width: int, height: int, *, min_face: int, detect_face_px: int, pyramid_step: float
) -> list[float]:
    """The scales (largest first) at which to run the detector on a ``width`` x ``height`` image.

    The first pass maps a face of ``min_face`` source pixels to ``detect_face_px``
    (never upscaling beyond 1.0 unless the face would be under the detector's
    minimum); each next pass divides the scale by ``pyramid_step`` so that bigger
    faces, which the detector misses when they are large, land in its range. The
    passes stop once the scaled image is too small to hold a face.
    """
    scale = detect_face_px / float(min_face)
    if scale > 1.0 and min_face >= DETECTOR_MIN_FACE_PX:
        scale = 1.0
    scales = []
    while min(width, height) * scale >= _MIN_PASS_SIDE or not scales:
        scales.append(scale)
        scale /= pyramid_step
        if len(scales) >= 8:
            break
    return scales


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not touch)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _contains_centre(outer: Box, inner: Box) -> bool:
    cx, cy = inner[0] + inner[2] / 2, inner[1] + inner[3] / 2
    return outer[0] <= cx <= outer[0] + outer[2] and outer[1] <= cy <= outer[1] + outer[3]


def same_face(a: Box, b: Box, *, threshold: float = 0.3) -> bool:
    """Whether two hits from different scales are one face.

    Overlap alone misses the case of one pass boxing eyes-to-chin and another the
    whole head; a box holding the other's centre, at a similar size, is the same face.
    """
    if iou(a, b) >= threshold:
        return True
    ratio = a[2] / b[2] if b[2] else math.inf
    return 0.5 <= ratio <= 2.0 and (_contains_centre(a, b) or _contains_centre(b, a))


def scale_box(box: Box, factor: float, width: int, height: int) -> Box:
    """``box`` found on an image scaled by ``factor``, in the original's pixels (clipped)."""
    x, y, w, h = (v / factor for v in box)
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(width, round(x + w)), min(height, round(y + h))
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def crop_square(box: Box, *, margin: float, lift: float) -> Box:
    """The square to cut around a face box: widened by ``margin`` per side, lifted by ``lift``.

    The square may reach outside the image; :func:`cut_square` deals with that.
    """
    x, y, w, h = box
    face = max(w, h)
    side = max(1, round(face * (1 + 2 * margin)))
    cx = x + w / 2
    cy = y + h / 2 - lift * face
    return (round(cx - side / 2), round(cy - side / 2), side, side)


def fit_square(square: Box, width: int, height: int) -> Box:
    """Shift ``square`` inside a ``width`` x ``height`` image where it fits.

    A square larger than the image in one direction is centred on that axis and
    left overhanging; :func:`cut_square` pads the overhang.
    """
    x, y, side, _ = square

    def place(start: int, limit: int) -> int:
        if side >= limit:
            return (limit - side) // 2
        return min(max(start, 0), limit - side)

    return (place(x, width), place(y, height), side, side)


def cut_square(image: Image.Image, square: Box, size: int) -> Image.Image:
    """Cut ``square`` out of an RGB ``image`` and resize it to ``size`` x ``size``.

    Parts of the square outside the image are filled by repeating the border
    pixels (a frame of black or white would teach the generator frames).
    Downscaling uses Lanczos, upscaling bicubic (Lanczos rings on line art when
    enlarging).
    """
    x, y, side, _ = square
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(image.width, x + side), min(image.height, y + side)
    region = image.crop((x0, y0, x1, y1))
    if (x0, y0, x1, y1) != (x, y, x + side, y + side):
        arr = np.asarray(region)
        pad = ((y0 - y, y + side - y1), (x0 - x, x + side - x1), (0, 0))
        region = Image.fromarray(np.pad(arr, pad, mode="edge"))
    method = Image.Resampling.LANCZOS if side >= size else Image.Resampling.BICUBIC
    return region.resize((size, size), method)


def dhash(image: Image.Image) -> int:
    """A 64-bit difference hash: near-identical crops differ in few bits."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    # SQLite integers are signed 64-bit.
    return value - (1 << 64) if value >= (1 << 63) else value
