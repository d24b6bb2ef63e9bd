"""Scenes for the crop pipeline: 1–4 characters over a busy background, with true face boxes.

A scene is a canvas of 300–3000 px holding one to four characters (head, hair mass,
neck, shoulders and torso down to the canvas edge) whose face boxes are 48–600 px
wide, over a background cluttered with shapes. The ground-truth box of a face is
defined the way animeface draws its box, measured on upright sketchbook crops
(``benchmarks/sketchbook_detection.py`` reports the agreement):

* horizontally it spans the cheek lines (the face outline at eye level), about
  2.1 face half-widths, centred on the features (it follows a turned head);
* vertically it runs from about 0.3 face half-widths above the brows (the level
  where the bangs hang) to just below the chin, so it is roughly square.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mangagan_app.core.attributes import Attributes
from mangagan_app.core.files import atomic_write_bytes, atomic_write_text
from mangagan_app.core.sketchbook.face import draw_character
from mangagan_app.core.sketchbook.geometry import Pose
from mangagan_app.core.sketchbook.look import Look, sample_look
from mangagan_app.core.sketchbook.parallel import ProgressFn, StopFn, run_chunks
from mangagan_app.core.sketchbook.priors import sample_attributes

Box = tuple[int, int, int, int]  # x, y, width, height

# The detector's box in face units around the eye line, measured on 300 upright
# crops at 128 and 256 px: centre (0.02, 0.26), width 2.1 x face width, height 2.05.
# Its centre moves with the features, i.e. at about half their depth.
BOX_CENTRE = (0.02, 0.26)
BOX_DEPTH = 0.55
BOX_WIDTH = 2.1
BOX_HEIGHT = 2.05
CANVAS_RANGE = (300, 3000)
FACE_RANGE = (48, 600)
FACE_COUNT_PRIOR = (0.4, 0.3, 0.2, 0.1)


def face_box(pose: Pose, look: Look) -> tuple[float, float, float, float]:
    """The ground-truth face box (x, y, w, h, canvas pixels) of a face drawn at ``pose``."""
    cx, cy = pose.pt(*BOX_CENTRE, z=BOX_DEPTH)
    w = pose.px(BOX_WIDTH * look.face_width)
    h = pose.px(BOX_HEIGHT)
    return cx - w / 2, cy - h / 2, w, h


@dataclass(frozen=True)
class SceneFace:
    """One character of a scene: its true face box, attributes and head tilt."""

    box: Box
    attributes: Attributes
    roll_deg: float

    def to_dict(self) -> dict:
        return {"box": list(self.box), "roll_deg": round(self.roll_deg, 2), **self.attributes.to_dict()}


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    faces: list[SceneFace]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def busy_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A gradient covered in random rectangles, discs, thick lines and polygons."""
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, height)[:, None, None]
    grad = (top * (1 - t) + bottom * t).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(grad, (height, width, 3)).copy())
    d = ImageDraw.Draw(image, "RGBA")
    scale = max(width, height)
    for _ in range(int(rng.integers(40, 160))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3)) + (int(rng.integers(120, 256)),)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = scale * _log_uniform(rng, 0.01, 0.25)
        kind = int(rng.integers(0, 4))
        if kind == 0:
            d.rectangle((x - r, y - r * rng.uniform(0.2, 1), x + r, y + r * rng.uniform(0.2, 1)), fill=colour)
        elif kind == 1:
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif kind == 2:
            a = rng.uniform(0, math.pi)
            d.line(
                (x - r * math.cos(a), y - r * math.sin(a), x + r * math.cos(a), y + r * math.sin(a)),
                fill=colour,
                width=max(1, int(r * rng.uniform(0.02, 0.15))),
            )
        else:
            pts = [(x + r * math.cos(a), y + r * math.sin(a)) for a in np.sort(rng.uniform(0, 2 * math.pi, 5))]
            d.polygon(pts, fill=colour)
    return image


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _head_region(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The part of the canvas a character's hair and ears may cover around its face box."""
    x, y, w, h = box
    return x - 0.5 * w, y - 0.55 * h, 2.0 * w, 1.8 * h


def _place_faces(rng: np.random.Generator, width: int, height: int) -> list[tuple[float, float, float]]:
    """(box centre x, centre y, box width) of up to four faces that do not cover one another."""
    count = 1 + int(rng.choice(4, p=FACE_COUNT_PRIOR))
    placed: list[tuple[float, float, float]] = []
    boxes: list[tuple[float, float, float, float]] = []
    biggest = min(FACE_RANGE[1], 0.5 * min(width, height))
    for _ in range(count * 12):
        if len(placed) == count:
            break
        w = _log_uniform(rng, FACE_RANGE[0], max(FACE_RANGE[0] + 1, biggest))
        cx = rng.uniform(0.75 * w, width - 0.75 * w)
        cy = rng.uniform(0.9 * w, max(0.9 * w + 1, height - 0.75 * w))
        box = (cx - w / 2, cy - w / 2, w, w)
        if any(_overlaps(_head_region(box), b) or _overlaps(_head_region(b), box) for b in boxes):
            continue
        placed.append((cx, cy, w))
        boxes.append(box)
    return placed


def _draw_figure(
    canvas: Image.Image, attrs: Attributes, look: Look, centre: tuple[float, float], box_width: float
) -> tuple[float, float, float, float]:
    """Draw one character whose face box is ``box_width`` wide at ``centre``; return its true box."""
    unit = box_width / (BOX_WIDTH * look.face_width)
    ss = 3 if box_width < 100 else 2 if box_width < 300 else 1
    # Place the eye line so that the box centre lands on ``centre`` (upright, before yaw/pitch).
    eye_x, eye_y = centre[0] - BOX_CENTRE[0] * unit, centre[1] - BOX_CENTRE[1] * unit
    reach = 3.3 * unit  # hair, tails and shoulders stay within this of the eye line sideways and up
    x0, y0 = max(0, int(eye_x - reach)), max(0, int(eye_y - reach))
    x1, y1 = min(canvas.width, int(eye_x + reach) + 1), canvas.height
    if x1 <= x0 or y1 <= y0:
        return face_box(Pose(eye_x, eye_y, unit, look.roll, look.yaw, look.pitch), look)
    layer = Image.new("RGB", ((x1 - x0) * ss, (y1 - y0) * ss))
    coverage = Image.new("L", layer.size, 0)
    local = Pose((eye_x - x0) * ss, (eye_y - y0) * ss, unit * ss, look.roll, look.yaw, look.pitch)
    draw_character(layer, local, attrs, look, body_bottom=(y1 - eye_y) / unit + 1.0, coverage=coverage)
    if ss > 1:
        # Box-filter the coverage so edges blend; the colour layer gets the sharper filter.
        layer = layer.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
        coverage = coverage.resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
    canvas.paste(layer, (x0, y0), coverage)
    return face_box(Pose(eye_x, eye_y, unit, look.roll, look.yaw, look.pitch), look)


def render_scene(rng: np.random.Generator) -> Scene:
    """One scene: canvas 300–3000 px, 1–4 characters with face boxes 48–600 px, busy background.

    Characters are drawn from the top of the canvas down, so a lower character's
    hair may overlap the body of one above it but never a face (face regions are
    kept apart when placing).
    """
    longer = int(_log_uniform(rng, *CANVAS_RANGE))
    aspect = rng.uniform(0.6, 1.6)
    width, height = (longer, int(longer / aspect)) if aspect >= 1 else (int(longer * aspect), longer)
    width, height = max(CANVAS_RANGE[0], width), max(CANVAS_RANGE[0], height)
    canvas = busy_background(rng, width, height)
    faces: list[SceneFace] = []
    for cx, cy, w in sorted(_place_faces(rng, width, height), key=lambda f: f[1]):
        attrs = sample_attributes(rng)
        look = sample_look(attrs, rng)
        x, y, bw, bh = _draw_figure(canvas, attrs, look, (cx, cy), w)
        faces.append(SceneFace((round(x), round(y), round(bw), round(bh)), attrs, math.degrees(look.roll)))
    return Scene(canvas, faces)


def encode_scene(image: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.save(buf, format="JPEG", quality=quality)
    else:
        image.save(buf, format="PNG")
    return buf.getvalue()


def scene_rng(seed: int, index: int) -> np.random.Generator:
    # The trailing constant keeps scene streams apart from the synth faces of the same seed.
    return np.random.default_rng([seed, index, 5])


def _write_scene_chunk(out_dir: str, seed: int, indices: list[int]) -> list[dict]:
    records = []
    for index in indices:
        rng = scene_rng(seed, index)
        scene = render_scene(rng)
        fmt = "jpeg" if rng.random() < 0.5 else "png"
        quality = int(rng.integers(70, 96))
        name = f"scene_{index:06d}." + ("jpg" if fmt == "jpeg" else "png")
        atomic_write_bytes(Path(out_dir) / name, encode_scene(scene.image, fmt, quality))
        records.append(
            {
                "file": name,
                "index": index,
                "width": scene.image.width,
                "height": scene.image.height,
                "format": fmt,
                "faces": [f.to_dict() for f in scene.faces],
            }
        )
    return records


@dataclass(frozen=True)
class ScenesResult:
    out_dir: Path
    written: int
    stopped: bool


def write_scenes(
    out_dir: str | os.PathLike,
    count: int,
    *,
    seed: int = 0,
    workers: int = 1,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ScenesResult:
    """Write ``count`` scenes (``scene_NNNNNN.jpg``/``.png``) and ``scenes.json`` to ``out_dir``.

    ``scenes.json`` (written last, atomically) lists for every written scene its file,
    size, format and faces (true box ``[x, y, w, h]``, head tilt, exact attributes).
    The same seed gives the same files whatever the worker count. Raises
    ``ValueError`` for a non-positive count, ``OSError`` when the folder cannot be written.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks = [(str(out), seed, list(range(i, min(i + 4, count)))) for i in range(0, count, 4)]
    records, stopped = run_chunks(
        _write_scene_chunk, chunks, workers=workers, total=count, progress=progress, should_stop=should_stop
    )
    manifest = {
        "seed": seed,
        "box": "animeface-style face box, see mangagan_app/core/sketchbook/scenes.py",
        "scenes": records,
    }
    atomic_write_text(out / "scenes.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return ScenesResult(out, len(records), stopped)
