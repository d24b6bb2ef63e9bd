"""A face recipe: everything needed to draw one face again, and its home in PNG text chunks.

A recipe holds the exact noise vector, the exact condition vector fed to the
generator (one-hot/multi-hot for a normal face, a blend mid-morph), the latent
slider offsets (in σ units of each slider direction) and the truncation ("variety")
factor. The seed is kept for people to read and type; the noise itself is what is
restored, so a face made by morphing, which has no seed, comes back too.

The PNG layout mirrors what image-generation UIs do: a ``mangagan`` text chunk with
JSON (exact values; noise as base64 of little-endian float32; the export's
:class:`Enlargement`) and a human-readable ``parameters`` chunk.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from mangagan_app.core.attributes import Attributes, Vocabulary
from mangagan_app.core.files import atomic_write_bytes

RECIPE_CHUNK = "mangagan"
PARAMETERS_CHUNK = "parameters"
FORMAT_VERSION = 1
# The largest seed a face can have: what the Generate tab's seed box (a 32-bit spin box) can show.
MAX_SEED = 2**31 - 1


class RecipeError(ValueError):
    """A file holds no face parameters, or parameters this version cannot read."""


@dataclass(frozen=True)
class FaceRecipe:
    """The parameters of one face; immutable so history entries can be shared safely."""

    noise: np.ndarray  # (z_dim,) float32
    condition: np.ndarray  # (cond_dim,) float32
    sliders: tuple[float, ...] = ()
    truncation: float = 1.0
    seed: int | None = None
    model_sha256: str = ""
    directions_sha256: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise", np.asarray(self.noise, np.float32).reshape(-1).copy())
        object.__setattr__(self, "condition", np.asarray(self.condition, np.float32).reshape(-1).copy())
        object.__setattr__(self, "sliders", tuple(float(s) for s in self.sliders))
        object.__setattr__(self, "truncation", float(self.truncation))
        self.noise.setflags(write=False)
        self.condition.setflags(write=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceRecipe):
            return NotImplemented
        return (
            np.array_equal(self.noise, other.noise)
            and np.array_equal(self.condition, other.condition)
            and self.sliders == other.sliders
            and self.truncation == other.truncation
            and self.seed == other.seed
            and self.model_sha256 == other.model_sha256
        )

    __hash__ = None  # type: ignore[assignment]  # arrays inside: equality only

    def with_(self, **changes) -> FaceRecipe:
        """A copy with some fields replaced (``recipe.with_(sliders=(1.0,))``)."""
        return replace(self, **changes)

    def attributes(self, vocabulary: Vocabulary) -> Attributes:
        """The attributes the condition vector asks for (the strongest value per group)."""
        return vocabulary.decode(self.condition)

    def slider(self, index: int) -> float:
        return self.sliders[index] if index < len(self.sliders) else 0.0

    # ---- JSON -----------------------------------------------------------------------
    def to_dict(self, vocabulary: Vocabulary | None = None) -> dict:
        """Exact, JSON-safe form: float32 values survive the float64 text round trip."""
        data = {
            "format": FORMAT_VERSION,
            "model_sha256": self.model_sha256,
            "directions_sha256": self.directions_sha256,
            "seed": self.seed,
            "noise_f32le": base64.b64encode(self.noise.astype("<f4").tobytes()).decode("ascii"),
            "condition": [float(x) for x in self.condition],
            "sliders": list(self.sliders),
            "truncation": self.truncation,
        }
        if vocabulary is not None:
            data["tags"] = vocabulary.to_tags(self.attributes(vocabulary), leading=())
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FaceRecipe:
        """Inverse of :meth:`to_dict`; raises :class:`RecipeError` on missing or malformed fields."""
        try:
            if int(data.get("format", 0)) > FORMAT_VERSION:
                raise RecipeError(f"face parameters format {data['format']} is newer than this app")
            noise = np.frombuffer(base64.b64decode(data["noise_f32le"]), dtype="<f4").astype(np.float32)
            seed = data.get("seed")
            return cls(
                noise=noise,
                condition=np.asarray(data["condition"], np.float32),
                sliders=tuple(float(s) for s in data.get("sliders", ())),
                truncation=float(data.get("truncation", 1.0)),
                seed=None if seed is None else int(seed),
                model_sha256=str(data.get("model_sha256", "")),
                directions_sha256=str(data.get("directions_sha256", "")),
            )
        except RecipeError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # Overflow: a seed of 1e999
            raise RecipeError(f"the face parameters are damaged ({exc})") from exc


@dataclass(frozen=True)
class Enlargement:
    """How an exported face was enlarged: ``scale`` 1-8, Lanczos (``smooth``) or nearest neighbour."""

    scale: int = 1
    smooth: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or not 1 <= self.scale <= 8:
            raise ValueError(f"scale must be a whole number from 1 to 8, not {self.scale!r}")
        if not isinstance(self.smooth, bool):
            raise ValueError(f"smooth must be true or false, not {self.smooth!r}")

    def describe(self) -> str:
        return f"{self.scale}x {'Lanczos' if self.smooth else 'nearest'}"


def random_attributes(vocabulary: Vocabulary, rng: np.random.Generator, *, tag_probability: float = 0.15) -> Attributes:
    """A value drawn uniformly for every exclusive group; each free tag with ``tag_probability``."""
    attrs = Attributes()
    for group in vocabulary.groups:
        if group.exclusive:
            attrs.choices[group.name] = group.values[int(rng.integers(len(group.values)))]
        else:
            attrs.tags.update(v for v in group.values if rng.random() < tag_probability)
    return attrs


def array_sha256(*arrays: np.ndarray) -> str:
    """A fingerprint of float32 arrays (used to notice changed slider directions)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.hexdigest()


# ---- PNG text chunks --------------------------------------------------------------------
def parameters_text(recipe: FaceRecipe, vocabulary: Vocabulary | None, enlargement: Enlargement | None = None) -> str:
    """One readable line, like image-generation UIs put in their ``parameters`` chunk.

    Every slider value is written, zeros too, so the line can be typed back
    (``--sliders 1.5,0,-2`` reads ``Sliders: +1.50, +0.00, -2.00``).
    """
    tags = ", ".join(recipe.to_dict(vocabulary).get("tags", []))
    sliders = ", ".join(f"{s:+.2f}" for s in recipe.sliders) or "none"
    seed = "morph/edited" if recipe.seed is None else str(recipe.seed)
    size = f", Enlarged: {enlargement.describe()}" if enlargement is not None else ""
    return (
        f"{tags}\nSeed: {seed}, Variety: {recipe.truncation:.2f}, Sliders: {sliders}{size}, "
        f"Model: {recipe.model_sha256[:12]}"
    )


def png_bytes(
    image: Image.Image,
    recipe: FaceRecipe | None = None,
    vocabulary: Vocabulary | None = None,
    *,
    enlargement: Enlargement | None = None,
) -> bytes:
    """The PNG encoding of ``image`` with the recipe (and how it was enlarged) in text chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "MangaGAN Studio")
    if recipe is not None:
        data = recipe.to_dict(vocabulary)
        if enlargement is not None:
            data.update(scale=enlargement.scale, smooth=enlargement.smooth)
        info.add_text(RECIPE_CHUNK, json.dumps(data, sort_keys=True))
        info.add_text(PARAMETERS_CHUNK, parameters_text(recipe, vocabulary, enlargement))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(
    path: str | os.PathLike,
    image: Image.Image,
    recipe: FaceRecipe | None = None,
    vocabulary: Vocabulary | None = None,
    *,
    enlargement: Enlargement | None = None,
) -> Path:
    """Write ``image`` atomically as PNG with the recipe in its text chunks."""
    return atomic_write_bytes(path, png_bytes(image, recipe, vocabulary, enlargement=enlargement))


def read_png_recipe(path: str | os.PathLike) -> FaceRecipe:
    """The recipe stored in a PNG written by :func:`save_png`.

    Raises :class:`RecipeError` naming the file when it is not a readable image, or
    holds no MangaGAN parameters, or holds damaged ones.
    """
    return read_png_face(path)[0]


def read_png_face(path: str | os.PathLike) -> tuple[FaceRecipe, Enlargement | None]:
    """The recipe stored in a PNG and how the face was enlarged (None for a PNG written
    before the enlargement was stored). Raises what :func:`read_png_recipe` raises."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or im.info)
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such file") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RecipeError(f"{path.name}: not a readable image ({exc})") from exc
    raw = text.get(RECIPE_CHUNK)
    if not raw or not isinstance(raw, str):
        raise RecipeError(
            f"{path.name} holds no MangaGAN face parameters (only PNGs exported by MangaGAN Studio can be restored)"
        )
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise RecipeError("the face parameters are damaged (not a JSON object)")
        recipe = FaceRecipe.from_dict(data)
        try:
            enlargement = Enlargement(data["scale"], data.get("smooth", False)) if "scale" in data else None
        except ValueError as exc:
            raise RecipeError(f"the face parameters are damaged ({exc})") from None
        return recipe, enlargement
    except (json.JSONDecodeError, RecipeError) as exc:
        raise RecipeError(f"{path.name}: {exc}") from exc
    except RecursionError:  # absurdly nested JSON
        raise RecipeError(f"{path.name}: the face parameters are damaged (nested too deeply)") from None
