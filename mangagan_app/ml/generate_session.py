"""What the Generate tab edits, without Qt: the current face and everything around it.

The state is the loaded model, each model's undo history of :class:`FaceRecipe`\\ s,
the favourites, the variation grid and the morph ends. Every edit is a method that
makes a new recipe from the current one and pushes it, so the tab (and the CLI, and a
test) only has to say what the person did; the tab binds widgets to this and renders
what it returns (napari's ``components/`` vs ``_qt/`` split).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from mangagan_app.core.attributes import AttributeGroup, Attributes
from mangagan_app.core.face_history import EditHistory, FavouritesStore, HistoriesByModel
from mangagan_app.core.face_recipe import MAX_SEED, Enlargement, FaceRecipe, png_bytes, random_attributes
from mangagan_app.core.files import atomic_write_bytes
from mangagan_app.ml.generator_service import (
    GeneratorService,
    frame_strip,
    gif_bytes,
    morph,
    morph_frames,
    upscale,
)
from mangagan_app.ml.sampling import image_grid

GRID_FACES = 16
# How related the variation grid's faces are to the current one: the share of the way
# their noise is slerped towards fresh noise (1.0: unrelated faces, each with a seed).
VARIATION_MODES = (("Similar faces", 0.45), ("Cousins", 0.75), ("New faces", 1.0))


class GenerateSession:
    """The Generate tab's state and edits for one person (favourites kept in ``favourites``)."""

    def __init__(self, favourites: FavouritesStore):
        self.favourites = favourites
        # Each model keeps its own edits: switching models and back finds them again.
        self.histories = HistoriesByModel()
        self.history = EditHistory()
        self.service: GeneratorService | None = None
        self.grid: list[tuple[np.ndarray, int | None]] = []  # (noise, seed or None) of each grid face
        self._grid_draws = 0
        self.morph_a: FaceRecipe | None = None
        self.morph_b: FaceRecipe | None = None

    # ---- the current face ----------------------------------------------------------------------
    @property
    def current(self) -> FaceRecipe | None:
        entry = self.history.current
        return entry.recipe if entry else None

    def push(self, recipe: FaceRecipe, label: str) -> bool:
        """Make ``recipe`` the current face; False when it already is (nothing to undo then)."""
        return self.history.push(recipe, label)

    def undo(self) -> bool:
        return self.history.undo() is not None

    def redo(self) -> bool:
        return self.history.redo() is not None

    def back_to(self, index: int) -> bool:
        """Make history entry ``index`` the current face again, as a new edit."""
        entry = self.history.entries[index]
        return entry is not self.history.current and self.push(entry.recipe, f"Back to: {entry.label}")

    # ---- the model ------------------------------------------------------------------------------
    def use_model(self, service: GeneratorService, *, first_seed: int, truncation: float = 1.0) -> bool:
        """Switch to ``service``; True when it is opened for the first time in this session.

        A model used before comes back with its own history and current face. A new one
        starts with the face on the canvas redrawn by it (the same character, to compare
        the two models) when its noise and attributes fit, otherwise with ``first_seed``.
        The morph ends are cleared: they were drawn by the previous model.
        """
        previous, previous_name = self.current, self.service.name if self.service is not None else ""
        self.service = service
        self.history = self.histories.for_model(service.sha256)
        self.morph_a = self.morph_b = None
        if self.history.current is not None:
            return False
        if (
            previous is not None
            and previous.noise.shape == (service.z_dim,)
            and previous.condition.shape == (service.vocabulary.dim,)
        ):
            first = previous.with_(sliders=(), model_sha256=service.sha256, directions_sha256=service.directions.sha256)
            self.push(first, f"The face of {previous_name}")
        else:
            zeros = (0.0,) * len(service.directions)
            self.push(service.recipe(first_seed, sliders=zeros, truncation=truncation), f"Seed {first_seed}")
        return True

    # ---- edits ---------------------------------------------------------------------------------------
    def randomize(
        self, seed: int, *, keep: Attributes, random_groups: Iterable[AttributeGroup], lock_noise: bool = False
    ) -> bool:
        """A new face from ``seed``: ``random_groups`` drawn afresh, the rest as in ``keep``.

        With ``lock_noise`` the current face keeps its noise and only its attributes change.
        The sliders and variety stay as they are.
        """
        current = self.current
        drawn = random_attributes(self.service.vocabulary, np.random.default_rng(seed))
        attrs = Attributes(dict(keep.choices), set(keep.tags))
        for group in random_groups:
            if group.exclusive:
                attrs.choices[group.name] = drawn.choices[group.name]
            else:
                attrs.tags.difference_update(group.values)
                attrs.tags.update(t for t in drawn.tags if t in group.values)
        condition = self.service.vocabulary.encode(attrs)[0]
        if lock_noise and current is not None:
            return self.push(current.with_(condition=condition), "Randomize attributes")
        fresh = self.service.recipe(seed)
        if current is not None:
            fresh = fresh.with_(sliders=current.sliders, truncation=current.truncation)
        return self.push(fresh.with_(condition=condition), f"Seed {seed}")

    def set_seed(self, seed: int) -> bool:
        """The current face with the noise of ``seed`` (same attributes and sliders)."""
        current = self.current
        if current is None or seed < 0 or seed == current.seed:
            return False
        return self.push(current.with_(noise=self.service.seed_noise(seed), seed=seed), f"Seed {seed}")

    def set_attributes(self, attrs: Attributes, label: str) -> bool:
        """Same noise, new condition: the character stays, the attribute changes."""
        current = self.current
        return current is not None and self.push(
            current.with_(condition=self.service.vocabulary.encode(attrs)[0]), label
        )

    def with_sliders(self, sliders: tuple[float, ...], truncation: float) -> FaceRecipe | None:
        """The current face with these slider values and variety (not yet an edit: a drag shows it)."""
        current = self.current
        return None if current is None else current.with_(sliders=tuple(sliders), truncation=truncation)

    def reset_sliders(self) -> bool:
        current = self.current
        return current is not None and self.push(
            current.with_(sliders=(0.0,) * len(self.service.directions)), "Reset sliders"
        )

    # ---- the variation grid ------------------------------------------------------------------------
    def new_grid(self, strength: float) -> list[FaceRecipe]:
        """:data:`GRID_FACES` new relatives of the current face, ``strength`` of the way to fresh noise."""
        current = self.current
        if current is None:
            return []
        self._grid_draws += 1
        if strength >= 1.0:
            base = int(np.random.default_rng(self._grid_draws + (current.seed or 0)).integers(MAX_SEED - GRID_FACES))
            self.grid = [(self.service.seed_noise(base + i), base + i) for i in range(GRID_FACES)]
        else:
            variants = self.service.variations(current, GRID_FACES, seed=self._grid_draws, strength=strength)
            self.grid = [(v.noise, None) for v in variants]
        return self.grid_recipes()

    def grid_recipes(self) -> list[FaceRecipe]:
        """The grid's faces with the current attributes and sliders (ticking glasses puts glasses on all)."""
        current = self.current
        return [] if current is None else [current.with_(noise=noise, seed=seed) for noise, seed in self.grid]

    def pick(self, index: int) -> bool:
        """Make grid face ``index`` the current face."""
        return index < len(self.grid) and self.push(self.grid_recipes()[index], f"Variation {index + 1}")

    # ---- morph ---------------------------------------------------------------------------------------
    def set_morph_end(self, end: str, recipe: FaceRecipe) -> None:
        if end == "a":
            self.morph_a = recipe
        else:
            self.morph_b = recipe

    def morph_at(self, t: float) -> FaceRecipe | None:
        """The face ``t`` of the way from A to B (None until both are chosen)."""
        if self.morph_a is None or self.morph_b is None:
            return None
        return morph(self.morph_a, self.morph_b, t)

    def morph_frames(self, frames: int) -> list[Image.Image]:
        """``frames`` (≥ 2) faces from A to B, both included; [] until both are chosen."""
        if self.morph_a is None or self.morph_b is None:
            return []
        return morph_frames(self.service, self.morph_a, self.morph_b, frames)

    # ---- favourites ------------------------------------------------------------------------------------
    def is_starred(self, recipe: FaceRecipe | None) -> bool:
        return recipe is not None and self.favourites.find(recipe) is not None

    def toggle_favourite(self) -> bool:
        """Star or unstar the current face; True when it is starred now."""
        current = self.current
        if current is None:
            return False
        if self.is_starred(current):
            self.favourites.remove(current)
            return False
        self.favourites.add(current)
        return True

    def favourite_recipes(self) -> list[tuple[str, FaceRecipe, str]]:
        """(id, recipe, name) of the loaded model's favourites, newest first."""
        if self.service is None:
            return []
        return [(f.id, f.recipe, f.name) for f in self.favourites.all(self.service.sha256)]

    def favourite(self, fav_id: str) -> FaceRecipe | None:
        return next((f.recipe for f in self.favourites.all() if f.id == fav_id), None)


# ---- files an export writes (what the tab's export worker and the command line run) ---------------
def face_png(service: GeneratorService, recipe: FaceRecipe, enlargement: Enlargement) -> bytes:
    """The face enlarged as asked, as a PNG holding its parameters (and the enlargement)."""
    image = upscale(service.render_image(recipe), enlargement.scale, smooth=enlargement.smooth)
    return png_bytes(image, recipe, service.vocabulary, enlargement=enlargement)


def morph_file(
    service: GeneratorService, a: FaceRecipe, b: FaceRecipe, frames: int, *, gif: bool, enlargement: Enlargement
) -> bytes:
    """``frames`` faces from A to B, enlarged: a bouncing GIF, or a PNG strip of the frames."""
    drawn = [upscale(f, enlargement.scale, smooth=enlargement.smooth) for f in morph_frames(service, a, b, frames)]
    return gif_bytes(drawn) if gif else png_bytes(frame_strip(drawn))


def sheet_png(service: GeneratorService, recipes: list[FaceRecipe], columns: int, enlargement: Enlargement) -> bytes:
    """The faces of ``recipes`` on one sheet, ``columns`` wide, enlarged."""
    sheet = Image.fromarray(image_grid(service.render(recipes), columns))
    return png_bytes(upscale(sheet, enlargement.scale, smooth=enlargement.smooth))


def save(path: Path, make: Callable[..., bytes], *args, **kwargs) -> Path:
    """Write ``make(*args, **kwargs)`` to ``path`` atomically; returns ``path``."""
    atomic_write_bytes(path, make(*args, **kwargs))
    return path
