"""Tags for crops: from a sidecar file next to the source, else from detector colours.

A kohya-style ``name.txt`` holds comma-separated tags; a Danbooru / gallery-dl
``name.png.json`` (or ``name.json``) holds them in ``tag_string_general``,
``tag_string`` or ``tags``. A sidecar describes the whole picture, so with several
characters it may name two hair colours: such a group is ambiguous and the
detector's colour estimate picks among the named values for each face.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mangagan_app.core.attributes import VOCABULARY, Attributes, tags_outside

log = logging.getLogger(__name__)

# Each colour name as animeface *reports* it, not as it is painted: the detector
# samples the shaded part of the hair and the dark upper iris, so its readings are
# darker and more saturated than the fill (a white-haired face reads (169, 184,
# 203), a red eye (86, 15, 16)). These are the medians of its readings on 700
# sketchbook crops (seed 99, not the scenes the benchmark measures on); on real
# illustrations expect the mapping to be less accurate than the benchmark says.
HAIR_REFERENCE_RGB: dict[str, tuple[int, int, int]] = {
    "aqua": (44, 174, 168),
    "black": (20, 21, 25),
    "blonde": (242, 208, 17),
    "blue": (31, 74, 148),
    "brown": (80, 53, 31),
    "green": (36, 105, 34),
    "grey": (86, 83, 82),
    "orange": (206, 104, 16),
    "pink": (243, 34, 122),
    "purple": (94, 47, 125),
    "red": (141, 23, 25),
    "silver": (109, 130, 180),
    "white": (169, 184, 203),
}
EYE_REFERENCE_RGB: dict[str, tuple[int, int, int]] = {
    "aqua": (16, 97, 91),
    "black": (86, 75, 71),
    "blue": (22, 45, 89),
    "brown": (82, 65, 33),
    "green": (18, 75, 19),
    "orange": (110, 57, 12),
    "pink": (132, 17, 72),
    "purple": (65, 26, 84),
    "red": (86, 15, 16),
    "yellow": (109, 88, 11),
}
_COLOUR_GROUPS = {"hair_colour": HAIR_REFERENCE_RGB, "eye_colour": EYE_REFERENCE_RGB}


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB rows in 0..255: distances there follow perceived difference."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def nearest_colour(rgb: Sequence[int], group: str, candidates: Iterable[str] | None = None) -> str:
    """The vocabulary value of ``group`` (``hair_colour`` / ``eye_colour``) nearest to ``rgb``.

    ``candidates`` restricts the choice (the values a sidecar named). Raises
    ``KeyError`` for another group.
    """
    table = _COLOUR_GROUPS[group]
    names = [n for n in (candidates or table) if n in table] or list(table)
    refs = _srgb_to_lab(np.array([table[n] for n in names]))
    lab = _srgb_to_lab(np.array([rgb]))
    return names[int(np.argmin(((refs - lab) ** 2).sum(axis=1)))]


def find_sidecar(source: Path) -> Path | None:
    """The tag file beside ``source`` (``a.txt``, ``a.png.txt``, ``a.png.json``, ``a.json``), if any."""
    for candidate in (
        source.with_suffix(".txt"),
        source.with_name(source.name + ".txt"),
        source.with_name(source.name + ".json"),
        source.with_suffix(".json"),
    ):
        if candidate != source and candidate.is_file():
            return candidate
    return None


def read_sidecar_tags(sidecar: Path) -> list[str]:
    """The raw tags in a kohya ``.txt`` or Danbooru/gallery-dl ``.json`` file.

    Raises ``OSError`` when unreadable and ``ValueError`` when the JSON is invalid
    or holds no tags field.
    """
    text = sidecar.read_text(encoding="utf-8", errors="replace")
    if sidecar.suffix.lower() != ".json":
        return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
    data = json.loads(text)
    for key in ("tag_string_general", "tag_string", "tags"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [str(v) for v in value]
        if isinstance(value, dict):  # gallery-dl's categorised tags: {"general": [...], ...}
            return [str(v) for values in value.values() for v in values]
    raise ValueError(f"{sidecar.name}: no tag_string, tag_string_general or tags field")


@dataclass(frozen=True)
class SidecarTags:
    """What a sidecar says: settled attributes, the values named for ambiguous groups, and
    the tags outside the app's vocabulary (characters, costumes: ``--vocabulary auto``
    makes them conditions), meta tags left out."""

    attributes: Attributes
    ambiguous: dict[str, tuple[str, ...]]
    own: tuple[str, ...] = ()


def parse_sidecar(raw_tags: Iterable[str]) -> SidecarTags:
    """Vocabulary attributes in ``raw_tags``, and the other tags normalised in ``own``.

    An exclusive group named with two or more values (two characters) is left
    out of the attributes and listed in ``ambiguous``.
    """
    named: dict[str, list[str]] = {}
    attrs = Attributes()
    own: list[str] = []
    for raw in raw_tags:
        own += tags_outside(raw, VOCABULARY)
        found, _ = VOCABULARY.parse_tags([raw], strict=False)
        for group, value in found.choices.items():
            if value not in named.setdefault(group, []):
                named[group].append(value)
        attrs.tags |= found.tags
    ambiguous = {}
    for group, values in named.items():
        if len(values) == 1:
            attrs.choices[group] = values[0]
        else:
            ambiguous[group] = tuple(values)
    return SidecarTags(attrs, ambiguous, tuple(dict.fromkeys(own)))


def face_tags(sidecar: SidecarTags | None, hair_rgb: Sequence[int], eye_rgb: Sequence[int]) -> tuple[list[str], str]:
    """Tags of one face (the vocabulary's, then the sidecar's own) and where they came from.

    The source is ``"sidecar"`` when the sidecar settles everything it can,
    ``"sidecar+detector"`` when detector colours filled a gap, and ``"detector"``
    without a sidecar (hair and eye colour only).
    """
    attrs = Attributes(dict(sidecar.attributes.choices), set(sidecar.attributes.tags)) if sidecar else Attributes()
    origin = "sidecar" if sidecar else "detector"
    for group, rgb in (("hair_colour", hair_rgb), ("eye_colour", eye_rgb)):
        if group in attrs.choices:
            continue
        candidates = sidecar.ambiguous.get(group) if sidecar else None
        if sidecar and not candidates:
            continue  # the sidecar did not mention it: unknown beats a guess contradicting nothing
        attrs.choices[group] = nearest_colour(rgb, group, candidates)
        if sidecar:
            origin = "sidecar+detector"
    return VOCABULARY.to_tags(attrs, leading=()) + list(sidecar.own if sidecar else ()), origin
