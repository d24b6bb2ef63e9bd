"""Writing sketchbook faces to disk: PNG + kohya tag sidecar + ``metadata.jsonl``.

Image ``i`` of a run with seed ``s`` draws from ``default_rng([s, i])`` alone, so a
file's content depends only on (seed, index, size): the number of worker processes
and the order they finish in change nothing.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mangagan_app.core.attributes import VOCABULARY, Attributes
from mangagan_app.core.files import atomic_write_bytes, atomic_write_text
from mangagan_app.core.sketchbook.face import render_face, render_look
from mangagan_app.core.sketchbook.look import LOOK_FACTORS, Look, look_factors, sample_look
from mangagan_app.core.sketchbook.parallel import ProgressFn, StopFn, run_chunks
from mangagan_app.core.sketchbook.priors import sample_attributes

log = logging.getLogger(__name__)

CHUNK = 32  # images per task: large enough to amortise process hand-off, small enough to stop quickly


def sketchbook_face(seed: int, index: int, size: int = 128) -> tuple[Attributes, Image.Image]:
    """Face number ``index`` of the sketchbook with ``seed``: its attributes and image."""
    rng = np.random.default_rng([seed, index])
    attrs = sample_attributes(rng)
    return attrs, render_face(attrs, rng, size)


def sketchbook_face_with_look(seed: int, index: int, size: int = 128) -> tuple[Attributes, Look, Image.Image]:
    """:func:`sketchbook_face` with the :class:`Look` it was drawn with (the same pixels)."""
    rng = np.random.default_rng([seed, index])
    attrs = sample_attributes(rng)
    look = sample_look(attrs, rng)
    return attrs, look, render_look(attrs, look, size)


def tag_line(attrs: Attributes) -> str:
    """The kohya-style caption of ``attrs``: ``1girl, blue_hair, short_hair, ...``."""
    return ", ".join(VOCABULARY.to_tags(attrs))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def check_face_size(size: int) -> None:
    """Raise ``ValueError`` unless ``size`` is a face size the sketchbook draws (16-1024 px)."""
    if not 16 <= size <= 1024:
        raise ValueError(f"size must be 16 to 1024 px, not {size}")


def contact_sheet(seed: int = 0, count: int = 64, size: int = 64, columns: int = 8, first: int = 0) -> Image.Image:
    """A grid of sketchbook faces ``first .. first+count-1`` (the same faces ``synth`` writes).

    Raises ``ValueError`` for a non-positive count or column number, or a size
    :func:`check_face_size` refuses.
    """
    if count <= 0 or columns <= 0:
        raise ValueError(f"count and columns must be positive, got {count} and {columns}")
    check_face_size(size)
    rows = -(-count // columns)
    sheet = Image.new("RGB", (columns * size, rows * size), (255, 255, 255))
    for k in range(count):
        _, face = sketchbook_face(seed, first + k, size)
        sheet.paste(face, ((k % columns) * size, (k // columns) * size))
    return sheet


def _write_chunk(out_dir: str, seed: int, indices: list[int], size: int) -> list[dict]:
    """Render and write ``indices``; returns their metadata records (runs in a worker)."""
    records = []
    for index in indices:
        attrs, image = sketchbook_face(seed, index, size)
        name = f"{index:06d}.png"
        atomic_write_bytes(Path(out_dir) / name, png_bytes(image))
        atomic_write_text(Path(out_dir) / f"{index:06d}.txt", tag_line(attrs) + "\n")
        records.append({"file": name, "index": index, "seed": seed, "size": size, **attrs.to_dict()})
    return records


def _look_chunk(seed: int, indices: list[int], size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (size, size, 3) uint8, factors) of ``indices`` (runs in a worker)."""
    records = []
    for index in indices:
        _, look, image = sketchbook_face_with_look(seed, index, size)
        records.append((np.asarray(image, np.uint8), look_factors(look)))
    return records


def draw_look_faces(
    count: int,
    *,
    seed: int,
    size: int = 64,
    workers: int = 1,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sketchbook faces of ``seed`` in memory with the factors they were drawn with:
    images (N, size, size, 3) uint8 and factors (N, len(LOOK_FACTORS)) float32.

    When ``should_stop()`` turns true, the faces drawn so far are returned.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    check_face_size(size)
    chunks = [(seed, list(range(i, min(i + CHUNK, count))), size) for i in range(0, count, CHUNK)]
    records, _ = run_chunks(
        _look_chunk, chunks, workers=workers, total=count, progress=progress, should_stop=should_stop
    )
    if not records:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, len(LOOK_FACTORS)), np.float32)
    return np.stack([image for image, _ in records]), np.stack([factors for _, factors in records])


@dataclass(frozen=True)
class SynthResult:
    """What a synth run wrote: ``written`` images, ``stopped`` if asked to stop early."""

    out_dir: Path
    written: int
    stopped: bool


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def write_sketchbook(
    out_dir: str | os.PathLike,
    count: int,
    *,
    size: int = 128,
    seed: int = 0,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SynthResult:
    """Write ``count`` faces to ``out_dir`` (created if needed) with tag sidecars and metadata.

    Files are ``NNNNNN.png`` + ``NNNNNN.txt``; ``metadata.jsonl`` holds one record per
    written image in index order (file name, seed, size, exact attributes) and is
    written last, atomically. ``progress(done, total)`` is called as chunks finish;
    when ``should_stop()`` turns true no new chunks start and the images written so
    far are kept and listed. Raises ``ValueError`` for a non-positive count or a
    size :func:`check_face_size` refuses, ``OSError`` when the folder cannot be written.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    check_face_size(size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks = [(str(out), seed, list(range(i, min(i + CHUNK, count))), size) for i in range(0, count, CHUNK)]
    records, stopped = run_chunks(
        _write_chunk,
        chunks,
        workers=workers or default_workers(),
        total=count,
        progress=progress,
        should_stop=should_stop,
    )
    atomic_write_text(out / "metadata.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    log.debug("wrote %d sketchbook faces to %s", len(records), out)
    return SynthResult(out, len(records), stopped)


def ensure_sketchbook(
    out_dir: str | os.PathLike,
    count: int,
    *,
    size: int,
    seed: int,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SynthResult:
    """The sketchbook folder ``out_dir`` with ``count`` faces, drawing it only if it is not complete.

    A folder counts as complete when its ``metadata.jsonl`` (written last) lists
    ``count`` faces of this ``size`` and ``seed``; anything else is redrawn, which is
    safe because the same (seed, index, size) always gives the same bytes.
    """
    metadata = Path(out_dir) / "metadata.jsonl"
    try:
        records = [json.loads(line) for line in metadata.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError):
        records = []
    if len(records) == count and all(r.get("size") == size and r.get("seed") == seed for r in records):
        if progress:
            progress(count, count)
        return SynthResult(Path(out_dir), count, False)
    return write_sketchbook(out_dir, count, size=size, seed=seed, progress=progress, should_stop=should_stop)
