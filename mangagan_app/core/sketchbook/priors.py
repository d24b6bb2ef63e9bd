"""Attribute priors and the named colours of the sketchbook.

The priors follow the rough frequencies of tagged anime portraits (brown, black and
blonde hair common, drills rare) while keeping every value frequent enough for a
conditional model to learn it. Named colours are centres in HLS space; the jitter
around each centre is small enough that a colour never reads as its neighbour
(silver stays bluish and light, grey stays mid, white stays near-white).
"""

from __future__ import annotations

import colorsys

import numpy as np

from mangagan_app.core.attributes import VOCABULARY, Attributes

HAIR_PRIOR = {
    "blonde": 0.13,
    "brown": 0.15,
    "black": 0.13,
    "blue": 0.08,
    "pink": 0.08,
    "purple": 0.07,
    "green": 0.05,
    "red": 0.06,
    "silver": 0.06,
    "white": 0.05,
    "orange": 0.05,
    "aqua": 0.05,
    "grey": 0.04,
}
STYLE_PRIOR = {"long": 0.42, "short": 0.24, "twintails": 0.13, "ponytail": 0.13, "drill": 0.08}
EYE_PRIOR = {
    "blue": 0.19,
    "red": 0.12,
    "brown": 0.14,
    "green": 0.10,
    "purple": 0.10,
    "yellow": 0.08,
    "pink": 0.06,
    "aqua": 0.07,
    "black": 0.06,
    "orange": 0.08,
}
TAG_PRIOR = {
    "blush": 0.30,
    "smile": 0.40,
    "open_mouth": 0.25,
    "hat": 0.10,
    "ribbon": 0.15,
    "glasses": 0.10,
    "dark_skin": 0.08,
    "cat_ears": 0.10,
}
# Head pitch is one three-way choice, so looking_up and looking_down never coexist.
PITCH_PRIOR = {"": 0.82, "looking_up": 0.09, "looking_down": 0.09}

# (hue 0..1, lightness, saturation) centres and the jitter allowed around each.
HAIR_HLS = {
    "blonde": (0.135, 0.72, 0.80),
    "brown": (0.070, 0.36, 0.45),
    "black": (0.68, 0.17, 0.12),
    "blue": (0.61, 0.50, 0.65),
    "pink": (0.93, 0.75, 0.75),
    "purple": (0.77, 0.48, 0.45),
    "green": (0.33, 0.42, 0.50),
    "red": (0.995, 0.45, 0.72),
    "silver": (0.62, 0.78, 0.16),
    "white": (0.60, 0.95, 0.10),
    "orange": (0.075, 0.57, 0.88),
    "aqua": (0.49, 0.58, 0.62),
    "grey": (0.0, 0.47, 0.02),
}
EYE_HLS = {
    "blue": (0.61, 0.50, 0.75),
    "red": (0.995, 0.45, 0.78),
    "brown": (0.07, 0.33, 0.55),
    "green": (0.34, 0.40, 0.62),
    "purple": (0.77, 0.48, 0.55),
    "yellow": (0.14, 0.55, 0.90),
    "pink": (0.92, 0.66, 0.78),
    "aqua": (0.49, 0.48, 0.70),
    "black": (0.70, 0.15, 0.10),
    "orange": (0.075, 0.52, 0.90),
}
HLS_JITTER = (0.012, 0.045, 0.08)
LIGHT_SKIN_HLS = (0.065, 0.90, 0.85)
# Dark skin spans tan (lightness 0.62) to deep brown (0.46); see look.py for the spread.
DARK_SKIN_HLS = (0.065, 0.54, 0.46)


def sample_attributes(rng: np.random.Generator) -> Attributes:
    """Draw one face's attributes from the sketchbook priors.

    Every exclusive group of :data:`VOCABULARY` gets a value; free tags are drawn
    independently except that looking_up and looking_down never come together and a
    hat replaces cat ears (a hat over cat ears is rare in the source art). The
    number of draws from ``rng`` is fixed, so callers can rely on the stream.
    """
    attrs = Attributes()
    for group, prior in (("hair_colour", HAIR_PRIOR), ("hair_style", STYLE_PRIOR), ("eye_colour", EYE_PRIOR)):
        values = VOCABULARY.group(group).values
        p = np.array([prior[v] for v in values], float)
        attrs.choices[group] = values[int(rng.choice(len(values), p=p / p.sum()))]
    draws = rng.random(len(TAG_PRIOR))
    attrs.tags = {tag for tag, u in zip(TAG_PRIOR, draws, strict=True) if u < TAG_PRIOR[tag]}
    if "hat" in attrs.tags:
        attrs.tags.discard("cat_ears")
    pitch = list(PITCH_PRIOR)
    p = np.array(list(PITCH_PRIOR.values()))
    chosen = pitch[int(rng.choice(len(pitch), p=p / p.sum()))]
    if chosen:
        attrs.tags.add(chosen)
    return attrs


def hls_rgb(h: float, l: float, s: float) -> tuple[int, int, int]:  # noqa: E741 - HLS naming
    r, g, b = colorsys.hls_to_rgb(h % 1.0, float(np.clip(l, 0, 1)), float(np.clip(s, 0, 1)))
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def jitter_hls(
    rng: np.random.Generator, centre: tuple[float, float, float], scale: tuple[float, float, float] = HLS_JITTER
) -> tuple[float, float, float]:
    """A colour near ``centre`` (uniform jitter per channel, hue wraps)."""
    d = rng.uniform(-1, 1, 3) * np.asarray(scale)
    return (centre[0] + d[0]) % 1.0, float(np.clip(centre[1] + d[1], 0, 1)), float(np.clip(centre[2] + d[2], 0, 1))


def shade(hls: tuple[float, float, float], dl: float, ds: float = 0.0, dh: float = 0.0) -> tuple[int, int, int]:
    """RGB of ``hls`` moved in lightness/saturation/hue (used for shadow and highlight bands)."""
    return hls_rgb(hls[0] + dh, hls[1] + dl, hls[2] + ds)
