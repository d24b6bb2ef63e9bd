"""The animeface detector behind a small, safe interface.

animeface (a C extension) accepts only some PIL modes, raises ``ValueError`` for
others and silently finds nothing in mode "1"; every image is therefore brought to
plain RGB first (EXIF orientation applied, alpha flattened over white).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import animeface
from PIL import Image, ImageDraw, ImageOps

from mangagan_app.core.cropping.geometry import same_face, scale_box


@dataclass(frozen=True)
class DetectedFace:
    """One detector hit, in the pixel coordinates of the image it was run on."""

    box: tuple[int, int, int, int]  # x, y, width, height
    likelihood: float
    hair_rgb: tuple[int, int, int]
    eye_rgb: tuple[int, int, int]
    skin_rgb: tuple[int, int, int]


def to_detector_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy of ``image`` the detector can read: EXIF-upright, alpha over white."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit, 32-bit and float greys: scale their range to 8 bit rather than clip.
        grey = image.convert("F")
        high = grey.getextrema()[1]
        factor = 255.0 / 65535.0 if 255 < high <= 65535 else 255.0 / high if high > 65535 else 1.0
        if 0 < high <= 1.0:  # float images in 0..1
            factor = 255.0
        return grey.point(lambda v: v * factor).convert("L").convert("RGB")
    return image.convert("RGB")


def detect_faces(image: Image.Image) -> list[DetectedFace]:
    """Run animeface on ``image`` (any PIL mode) and return its faces."""
    hits = animeface.detect(to_detector_rgb(image))
    faces = []
    for hit in hits:
        box = hit.face.pos
        eye = hit.left_eye.color
        faces.append(
            DetectedFace(
                box=(box.x, box.y, box.width, box.height),
                likelihood=float(hit.likelihood),
                hair_rgb=(hit.hair.color.r, hit.hair.color.g, hit.hair.color.b),
                eye_rgb=(eye.r, eye.g, eye.b),
                skin_rgb=(hit.skin.color.r, hit.skin.color.g, hit.skin.color.b),
            )
        )
    return faces


def detect_faces_multiscale(image: Image.Image, scales: Sequence[float]) -> list[DetectedFace]:
    """Detect on ``image`` resized by each of ``scales``; boxes in ``image``'s own pixels.

    Hits of one face found at several scales are merged, keeping the most likely.
    The detector is slow on big images and misses faces much larger than ~130 px,
    so the caller chooses scales (:func:`~.geometry.detection_scales`) that put
    the faces it wants into the detector's range. Results are sorted top to
    bottom, left to right, so face numbering is stable between runs.
    """
    rgb = to_detector_rgb(image)
    hits: list[DetectedFace] = []
    # Each smaller level is made from the previous one, and Pillow's reducing_gap
    # box-shrinks before filtering: on a 6 MP canvas this cuts the resizing time in
    # half, and it was a third of the pyramid's cost.
    previous = rgb
    for factor in sorted(scales, reverse=True):
        size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
        if size == rgb.size:
            scaled = rgb
        elif factor < 1:
            scaled = previous.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        else:
            scaled = rgb.resize(size, Image.Resampling.BICUBIC)
        previous = scaled if factor < 1 else previous
        for face in detect_faces(scaled):
            hits.append(replace(face, box=scale_box(face.box, factor, rgb.width, rgb.height)))
    kept: list[DetectedFace] = []
    for face in sorted(hits, key=lambda f: -f.likelihood):
        if not any(same_face(face.box, k.box) for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: (f.box[1], f.box[0]))


def draw_reference_face(size: int = 128) -> Image.Image:
    """A plain anime face drawn with Pillow that animeface must find.

    Deliberately independent of the sketchbook, so a broken renderer and a broken
    detector are told apart. Drawn at 4x and downsampled for clean edges.
    """
    canvas = size * 4
    im = Image.new("RGB", (canvas, canvas), (235, 240, 250))
    draw = ImageDraw.Draw(im)

    def px(*fractions: float) -> list[int]:
        return [int(f * canvas) for f in fractions]

    def pts(*pairs: tuple[float, float]) -> list[tuple[int, int]]:
        return [(int(x * canvas), int(y * canvas)) for x, y in pairs]

    hair, skin, line = (90, 60, 40), (255, 228, 210), (60, 40, 30)
    draw.ellipse(px(0.12, 0.08, 0.88, 0.80), fill=hair)
    draw.rectangle(px(0.14, 0.40, 0.86, 0.95), fill=hair)
    draw.polygon(pts((0.22, 0.35), (0.78, 0.35), (0.76, 0.62), (0.5, 0.86), (0.24, 0.62)), fill=skin, outline=line)
    draw.polygon(
        pts(
            (0.16, 0.22), (0.84, 0.22), (0.86, 0.45), (0.7, 0.36), (0.55, 0.44), (0.45, 0.36), (0.3, 0.44), (0.14, 0.45)
        ),
        fill=hair,
    )
    for cx in (0.36, 0.64):
        draw.ellipse(px(cx - 0.07, 0.45, cx + 0.07, 0.62), fill=(255, 255, 255))
        draw.ellipse(px(cx - 0.055, 0.47, cx + 0.055, 0.62), fill=(40, 80, 170))
        draw.ellipse(px(cx - 0.025, 0.52, cx + 0.025, 0.59), fill=(10, 10, 30))
        draw.ellipse(px(cx - 0.04, 0.49, cx - 0.01, 0.52), fill=(255, 255, 255))
        draw.line(px(cx - 0.08, 0.46, cx + 0.08, 0.44), fill=(20, 10, 10), width=int(0.018 * canvas))
    draw.line(px(0.49, 0.66, 0.5, 0.68), fill=(200, 140, 130), width=max(1, int(0.006 * canvas)))
    draw.line(px(0.46, 0.74, 0.54, 0.74), fill=(150, 60, 60), width=max(1, int(0.008 * canvas)))
    return im.resize((size, size), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class SelfCheckResult:
    ok: bool
    message: str


def detector_self_check() -> SelfCheckResult:
    """Draw :func:`draw_reference_face` at 128 px and confirm animeface finds it."""
    try:
        faces = detect_faces(draw_reference_face(128))
    except Exception as exc:  # noqa: BLE001 - any failure of the C extension is the finding
        return SelfCheckResult(False, f"the animeface detector failed to run: {exc}")
    if not faces:
        import PIL

        return SelfCheckResult(
            False,
            "the animeface detector found no face in a plain drawn face "
            f"(Pillow {PIL.__version__}; animeface 2.0.3 needs Pillow < 12)",
        )
    best = max(faces, key=lambda f: f.likelihood)
    return SelfCheckResult(True, f"found the reference face (likelihood {best.likelihood:.3f})")
