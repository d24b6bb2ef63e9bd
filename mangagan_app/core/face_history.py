"""Undo/redo over face edits, and favourites kept between runs (no Qt: testable alone).

Every edit (a tick, a slider released, a new seed, a grid pick, a restored PNG)
pushes the whole new :class:`FaceRecipe`; undo and redo move along the list. Recipes
are small (a few hundred floats), so whole states are simpler and safer than
inverse operations.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mangagan_app.core.face_recipe import FaceRecipe, RecipeError
from mangagan_app.core.files import atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryEntry:
    recipe: FaceRecipe
    label: str  # what the edit was, for the undo menu and tooltips ("Blue hair", "Seed 42")


class EditHistory:
    """A linear undo stack of face states; a new edit after undoing drops the redo branch."""

    def __init__(self, limit: int = 500):
        self._entries: list[HistoryEntry] = []
        self._index = -1
        self.limit = limit

    @property
    def current(self) -> HistoryEntry | None:
        return self._entries[self._index] if self._index >= 0 else None

    @property
    def entries(self) -> list[HistoryEntry]:
        """All states, oldest first (including any that redo would return to)."""
        return list(self._entries)

    @property
    def index(self) -> int:
        return self._index

    def push(self, recipe: FaceRecipe, label: str) -> bool:
        """Make ``recipe`` the current state; returns False (and records nothing) when it
        equals the current one, so a click that changes nothing is not an undo step."""
        if self.current is not None and self.current.recipe == recipe:
            return False
        del self._entries[self._index + 1 :]
        self._entries.append(HistoryEntry(recipe, label))
        if len(self._entries) > self.limit:
            del self._entries[0]
        self._index = len(self._entries) - 1
        return True

    def can_undo(self) -> bool:
        return self._index > 0

    def can_redo(self) -> bool:
        return self._index < len(self._entries) - 1

    def undo(self) -> HistoryEntry | None:
        """Step back; returns the now-current entry, or None when there is nothing to undo."""
        if not self.can_undo():
            return None
        self._index -= 1
        return self.current

    def redo(self) -> HistoryEntry | None:
        if not self.can_redo():
            return None
        self._index += 1
        return self.current

    def undo_label(self) -> str:
        return self._entries[self._index].label if self.can_undo() else ""

    def redo_label(self) -> str:
        return self._entries[self._index + 1].label if self.can_redo() else ""


class HistoriesByModel:
    """One :class:`EditHistory` per model, by the model's sha256.

    A recipe only renders with the model that made it, so each model keeps its own
    undo stack: switching to another model and back finds every earlier edit (and the
    current face) where it was left.
    """

    def __init__(self, limit: int = 500):
        self.limit = limit
        self._by_model: dict[str, EditHistory] = {}

    def for_model(self, model_sha256: str) -> EditHistory:
        """The history of ``model_sha256``: empty the first time a model is asked for."""
        history = self._by_model.get(model_sha256)
        if history is None:
            history = self._by_model[model_sha256] = EditHistory(self.limit)
        return history

    def all_entries(self) -> list[HistoryEntry]:
        """Every entry of every model's history."""
        return [entry for history in self._by_model.values() for entry in history.entries]


@dataclass(frozen=True)
class Favourite:
    id: str
    recipe: FaceRecipe
    name: str
    added: float


class FavouritesStore:
    """Starred faces in one JSON file (written atomically on every change).

    A damaged file is moved aside to ``<name>.damaged`` with a warning rather than
    losing the app; a damaged entry is skipped and logged.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._items: list[Favourite] = []
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            rows = data["favourites"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_suffix(self.path.suffix + ".damaged")
            log.warning("favourites file %s unreadable (%s); moved to %s", self.path, exc, aside)
            os.replace(self.path, aside)
            return
        for row in rows:
            try:
                self._items.append(
                    Favourite(
                        str(row["id"]),
                        FaceRecipe.from_dict(row["recipe"]),
                        str(row.get("name", "")),
                        float(row.get("added", 0.0)),
                    )
                )
            except (KeyError, TypeError, ValueError, RecipeError) as exc:
                log.warning("skipping a damaged favourite in %s: %s", self.path, exc)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.path,
            {
                "favourites": [
                    {"id": f.id, "name": f.name, "added": f.added, "recipe": f.recipe.to_dict()} for f in self._items
                ]
            },
        )

    def all(self, model_sha256: str | None = None) -> list[Favourite]:
        """Favourites, newest first; only those of ``model_sha256`` when given."""
        items = [f for f in self._items if model_sha256 is None or f.recipe.model_sha256 == model_sha256]
        return sorted(items, key=lambda f: f.added, reverse=True)

    def find(self, recipe: FaceRecipe) -> Favourite | None:
        return next((f for f in self._items if f.recipe == recipe), None)

    def add(self, recipe: FaceRecipe, name: str = "") -> Favourite:
        """Star ``recipe`` (returns the existing favourite if it is already starred)."""
        existing = self.find(recipe)
        if existing is not None:
            return existing
        fav = Favourite(uuid.uuid4().hex, recipe, name, time.time())
        self._items.append(fav)
        self._save()
        return fav

    def remove(self, recipe: FaceRecipe) -> bool:
        before = len(self._items)
        self._items = [f for f in self._items if f.recipe != recipe]
        if len(self._items) != before:
            self._save()
            return True
        return False
