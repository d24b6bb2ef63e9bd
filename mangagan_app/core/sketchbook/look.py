"""The variation of a face beyond its tags, drawn from the per-image random stream.

Tags fix what a face *is* (blue hair, glasses); a :class:`Look` fixes how this
particular drawing of it turns out: face shape, eye size and spacing, exact colours
inside each named colour, line weight, light direction, pose, background and
framing. The model needs that spread to learn a distribution rather than 130
templates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mangagan_app.core.attributes import Attributes
from mangagan_app.core.sketchbook.priors import (
    DARK_SKIN_HLS,
    EYE_HLS,
    HAIR_HLS,
    LIGHT_SKIN_HLS,
    hls_rgb,
    jitter_hls,
)

HLS = tuple[float, float, float]
RGB = tuple[int, int, int]

# Accessory colours: named, saturated, and never skin-like.
ACCENT_HLS = (
    (0.99, 0.45, 0.80),
    (0.60, 0.40, 0.70),
    (0.93, 0.70, 0.75),
    (0.0, 0.95, 0.0),
    (0.0, 0.15, 0.0),
    (0.75, 0.45, 0.55),
    (0.40, 0.35, 0.55),
    (0.13, 0.55, 0.85),
)
BACKGROUND_KINDS = ("flat", "gradient", "stripes", "dots", "checker")
PITCH_OF_TAG = {"looking_up": 0.22, "looking_down": -0.22}


@dataclass(frozen=True)
class Look:
    """Every continuous choice behind one drawing (face units, see geometry.py)."""

    hair: HLS
    eye: HLS
    skin: HLS
    accent: HLS
    accent2: HLS
    clothes: HLS
    face_width: float  # horizontal scale of the face outline
    chin: float  # v of the chin point
    jaw: float  # half-width of the jaw at the chin's shoulder
    eye_size: float
    eye_spacing: float  # u of each eye centre
    eye_height: float  # eye height / width
    eye_tilt: float  # outer corner raised by this much
    line: float  # line weight multiplier
    light: float  # -1 light from the left, +1 from the right
    bang_count: int
    bang_depth: float  # v of the bang tips (negative: above the eyes)
    bang_style: int  # 0 pointed strands, 1 blunt cut, 2 parted
    parting: float  # u of the parting of parted bangs
    lock_length: float  # v where the side locks end
    volume: float  # scale of the hair mass
    roll: float  # head tilt, radians
    yaw: float
    pitch: float
    gaze: tuple[float, float]
    mouth_width: float
    ribbon_side: float  # -1 left, +1 right, 0 top
    tail_side: float  # ponytail side
    hat_kind: int
    collar: int  # 0 sailor collar, 1 round neckline, 2 shirt collar
    glasses_round: bool
    background: str
    bg_colours: tuple[RGB, RGB]
    bg_param: float
    offset: tuple[float, float]  # framing offset, fraction of the crop
    zoom: float  # framing scale jitter


def sample_look(attrs: Attributes, rng: np.random.Generator, *, max_roll_deg: float = 35.0) -> Look:
    """Draw the non-tag variation of one face; the number of draws is fixed per call."""
    u = rng.random(40)
    n = rng.standard_normal(4)

    def between(i: int, lo: float, hi: float) -> float:
        return float(lo + (hi - lo) * u[i])

    hair = jitter_hls(rng, HAIR_HLS[attrs.choices["hair_colour"]])
    eye = jitter_hls(rng, EYE_HLS[attrs.choices["eye_colour"]])
    dark = "dark_skin" in attrs.tags
    skin = jitter_hls(rng, DARK_SKIN_HLS if dark else LIGHT_SKIN_HLS, (0.01, 0.08 if dark else 0.04, 0.08))
    accent = ACCENT_HLS[int(u[0] * len(ACCENT_HLS))]
    accent2 = ACCENT_HLS[int(u[1] * len(ACCENT_HLS))]
    clothes = (u[2], between(3, 0.25, 0.9), between(4, 0.1, 0.7))
    pitch = PITCH_OF_TAG.get(next((t for t in ("looking_up", "looking_down") if t in attrs.tags), ""), 0.0)
    pitch += 0.03 * float(n[0])
    gaze = (0.10 * float(n[1]), -0.08 if pitch > 0.1 else 0.10 if pitch < -0.1 else 0.03 * float(n[2]))
    roll = math.radians(float(np.clip(7.0 * n[3], -max_roll_deg, max_roll_deg)))
    kind = BACKGROUND_KINDS[int(u[5] * len(BACKGROUND_KINDS))]
    base = (u[6], between(7, 0.55, 0.95), between(8, 0.0, 0.6))
    other = (base[0] + between(9, -0.15, 0.15), base[1] + between(10, -0.2, 0.1), base[2])
    return Look(
        hair=hair,
        eye=eye,
        skin=skin,
        accent=accent,
        accent2=accent2,
        clothes=clothes,
        face_width=between(11, 0.9, 1.04),
        chin=between(12, 1.02, 1.22),
        jaw=between(13, 0.45, 0.66),
        eye_size=between(14, 0.9, 1.15),
        eye_spacing=between(15, 0.40, 0.49),
        eye_height=between(16, 1.1, 1.45),
        eye_tilt=between(17, -0.04, 0.08),
        line=between(18, 0.8, 1.3),
        light=-1.0 if u[19] < 0.5 else 1.0,
        bang_count=5 + int(u[20] * 4),
        bang_depth=between(21, -0.42, -0.22),
        bang_style=0 if u[34] < 0.5 else 1 if u[34] < 0.75 else 2,
        parting=between(35, -0.35, 0.35),
        lock_length=between(22, 0.0, 1.0),
        volume=between(23, 1.0, 1.12),
        roll=roll,
        yaw=between(24, -0.16, 0.16),
        pitch=pitch,
        gaze=gaze,
        mouth_width=between(25, 0.8, 1.25),
        ribbon_side=float(int(u[26] * 3) - 1),
        tail_side=-1.0 if u[27] < 0.5 else 1.0,
        hat_kind=int(u[28] * 2),
        collar=int(u[36] * 3),
        glasses_round=bool(u[29] < 0.4),
        background=kind,
        bg_colours=(hls_rgb(*base), hls_rgb(*other)),
        bg_param=float(u[30]),
        offset=(between(31, -0.035, 0.035), between(32, -0.03, 0.03)),
        zoom=between(33, 0.93, 1.07),
    )


@dataclass(frozen=True)
class LookFactor:
    """One continuous choice of a :class:`Look` an artist can name, read off a look as a number."""

    key: str
    name: str  # what an artist calls it: the slider's label
    read: Callable[[Look], float]


def _lightness(rgb: RGB) -> float:
    return sum(rgb) / (3 * 255)


# The factors a named slider can move. Hue and the tags' own features are not here:
# the attributes are the conditions, and a slider must leave them as they are.
LOOK_FACTORS = (
    LookFactor("roll", "Head tilt", lambda look: look.roll),
    LookFactor("yaw", "Turn left / right", lambda look: look.yaw),
    LookFactor("pitch", "Look up / down", lambda look: look.pitch),
    LookFactor("gaze_x", "Glance left / right", lambda look: look.gaze[0]),
    LookFactor("face_width", "Face width", lambda look: look.face_width),
    LookFactor("chin", "Chin length", lambda look: look.chin),
    LookFactor("jaw", "Jaw width", lambda look: look.jaw),
    LookFactor("eye_size", "Eye size", lambda look: look.eye_size),
    LookFactor("eye_spacing", "Eye spacing", lambda look: look.eye_spacing),
    LookFactor("eye_height", "Eye height", lambda look: look.eye_height),
    LookFactor("eye_tilt", "Eye tilt", lambda look: look.eye_tilt),
    LookFactor("mouth_width", "Smile width", lambda look: look.mouth_width),
    LookFactor("bang_depth", "Fringe length", lambda look: look.bang_depth),
    LookFactor("lock_length", "Hair length", lambda look: look.lock_length),
    LookFactor("volume", "Hair volume", lambda look: look.volume),
    LookFactor("line", "Line weight", lambda look: look.line),
    LookFactor("light", "Light from left / right", lambda look: look.light),
    LookFactor("hair_lightness", "Hair lightness", lambda look: look.hair[1]),
    LookFactor("skin_lightness", "Skin lightness", lambda look: look.skin[1]),
    LookFactor("background_lightness", "Background lightness", lambda look: _lightness(look.bg_colours[0])),
    LookFactor("zoom", "Zoom", lambda look: look.zoom),
    LookFactor("offset_x", "Shift left / right", lambda look: look.offset[0]),
    LookFactor("offset_y", "Shift up / down", lambda look: look.offset[1]),
)


def look_factors(look: Look) -> np.ndarray:
    """(len(LOOK_FACTORS),) float32: every factor of ``look``, in :data:`LOOK_FACTORS` order."""
    return np.array([factor.read(look) for factor in LOOK_FACTORS], np.float32)
