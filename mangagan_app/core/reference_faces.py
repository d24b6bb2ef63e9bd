"""CPU-bound helpers of the model evaluation, run in worker processes (no torch here).

* :func:`render_sketchbook_faces` draws sketchbook faces into memory — the unseen
  real faces the originality check calibrates against, and the tagger's data.
* :func:`detection_flags` asks animeface whether it finds a face in each image,
  after enlarging it (the detector misses blurry faces that fill a small frame;
  64-px faces are best checked at 2× bicubic, 128 px).

Both hold the GIL (Pillow drawing, the detector's C code), so they run in
spawn-context processes via :func:`~mangagan_app.core.sketchbook.parallel.run_chunks`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mangagan_app.core.attributes import Attributes
from mangagan_app.core.sketchbook.parallel import ProgressFn, StopFn, run_chunks

CHUNK = 64


def _render_chunk(seed: int, indices: list[int], size: int) -> list[tuple[dict, np.ndarray]]:
    from mangagan_app.core.sketchbook.dataset import sketchbook_face

    out = []
    for index in indices:
        attrs, image = sketchbook_face(seed, index, size)
        out.append((attrs.to_dict(), np.asarray(image.convert("RGB"), np.uint8)))
    return out


def render_sketchbook_faces(
    seed: int,
    count: int,
    size: int,
    *,
    first: int = 0,
    workers: int = 2,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[np.ndarray, list[Attributes]]:
    """Sketchbook faces ``first .. first+count-1`` of ``seed``: images (N, size, size, 3) uint8 and attributes.

    The same faces ``mangagan synth --seed SEED --size SIZE`` writes. When
    ``should_stop()`` turns true, the faces drawn so far are returned. Raises
    ``ValueError`` for a non-positive count.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    indices = list(range(first, first + count))
    chunks = [(seed, indices[i : i + CHUNK], size) for i in range(0, count, CHUNK)]
    records, _ = run_chunks(
        _render_chunk, chunks, workers=workers, total=count, progress=progress, should_stop=should_stop
    )
    if not records:
        return np.zeros((0, size, size, 3), np.uint8), []
    return np.stack([r[1] for r in records]), [Attributes.from_dict(r[0]) for r in records]


def _detect_chunk(images: np.ndarray, scale: int) -> list[bool]:
    from mangagan_app.core.cropping.detector import detect_faces

    found = []
    for array in images:
        image = Image.fromarray(array)
        if scale != 1:
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)
        found.append(bool(detect_faces(image)))
    return found


def detection_flags(
    images: np.ndarray,
    *,
    scale: int = 2,
    workers: int = 2,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> np.ndarray:
    """For each uint8 face (N, H, W, 3): does animeface find a face in it, enlarged ``scale``× bicubic?

    Returns a bool array as long as the faces checked (shorter when stopped early).
    Raises ``ValueError`` when ``images`` is not a batch of RGB images.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    chunks = [(images[i : i + CHUNK], scale) for i in range(0, len(images), CHUNK)]
    flags, _ = run_chunks(
        _detect_chunk, chunks, workers=workers, total=len(images), progress=progress, should_stop=should_stop
    )
    return np.asarray(flags, bool)
