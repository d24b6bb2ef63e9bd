"""The review grid's model and delegate: many thousands of crops, loaded lazily.

The model holds only the face ids of the current filter; records are fetched
from the catalogue in blocks and thumbnails are read from disk when a row is
first painted, into a bounded cache. Qt's own delegate paints them: PySide6 6.12
on Python 3.11 drops a reference to None/True/False on every void or bool call
made from Python, so a Python ``paint()`` run thousands of times kills the
interpreter; here painting stays in C++. ``QListView`` with uniform item sizes only
asks for the rows on screen, so 200k crops cost a list of ints.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PIL import Image, ImageDraw
from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt
from PySide6.QtGui import QImage, QPixmap

from mangagan_app.core.catalogue import Catalogue, FaceRecord

FACE_ID_ROLE = Qt.ItemDataRole.UserRole + 1
DECISION_ROLE = Qt.ItemDataRole.UserRole + 2

THUMB = 96
_BLOCK = 256
_PIXMAP_CACHE = 3000


def pil_to_pixmap(image: Image.Image) -> QPixmap:
    """A QPixmap of an RGB Pillow image (copied, so the bytes need not outlive it)."""
    data = image.tobytes()
    qimage = QImage(data, image.width, image.height, 3 * image.width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


def decorate(image: Image.Image, decision: str, duplicate: bool) -> Image.Image:
    """``image`` with its review state drawn on it."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    last = out.width - 1
    if decision == "keep":
        draw.rectangle((1, 1, last - 1, last - 1), outline=(40, 170, 60), width=4)
    elif decision == "reject":
        out = Image.blend(out, Image.new("RGB", out.size), 0.45)
        draw = ImageDraw.Draw(out)
        draw.rectangle((1, 1, last - 1, last - 1), outline=(220, 40, 40), width=4)
        draw.line((0, 0, last, last), fill=(220, 40, 40), width=3)
        draw.line((last, 0, 0, last), fill=(220, 40, 40), width=3)
    if duplicate:
        draw.polygon([(last - 18, 0), (last, 0), (last, 18)], fill=(255, 200, 0))
    return out


class FaceListModel(QAbstractListModel):
    """Face ids of one filter, in order; records and thumbnails fetched on demand."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._catalogue: Catalogue | None = None
        self._ids: list[int] = []
        self._rows: dict[int, int] | None = {}  # face id -> row, built on first use
        self._records: dict[int, FaceRecord] = {}
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()

    # ---- content -------------------------------------------------------------------
    def set_faces(self, catalogue: Catalogue | None, ids: list[int]) -> None:
        """Show ``ids`` (records read from ``catalogue``)."""
        self.beginResetModel()
        self._catalogue = catalogue
        self._ids = list(ids)
        # Built when a decision is first repainted, not per filter change: 200k ids cost ~80 ms.
        self._rows = None
        self._records.clear()
        self._pixmaps.clear()
        self.endResetModel()

    def face_id(self, row: int) -> int:
        return self._ids[row]

    def row_of(self, face_id: int) -> int | None:
        return self._row_index().get(face_id)

    def _row_index(self) -> dict[int, int]:
        if self._rows is None:
            self._rows = {face_id: row for row, face_id in enumerate(self._ids)}
        return self._rows

    def record(self, row: int) -> FaceRecord | None:
        """The record of ``row``, loading its block of rows on a miss."""
        face_id = self._ids[row]
        if face_id not in self._records and self._catalogue is not None:
            start = row - row % _BLOCK
            if len(self._records) > 20 * _BLOCK:
                self._records.clear()
            self._records.update(self._catalogue.faces(self._ids[start : start + _BLOCK]))
        return self._records.get(face_id)

    def decisions_changed(self, decisions: dict[int, str]) -> None:
        """Repaint rows whose decision was saved elsewhere (the records are immutable, so replace them)."""
        for face_id, decision in decisions.items():
            row = self._row_index().get(face_id)
            if row is None:
                continue
            old = self._records.get(face_id)
            if old is not None:
                self._records[face_id] = FaceRecord(**{**old.__dict__, "decision": decision})
            self._pixmaps.pop(face_id, None)
            index = self.index(row)
            self.dataChanged.emit(
                index, index, [Qt.ItemDataRole.DecorationRole, DECISION_ROLE, Qt.ItemDataRole.ToolTipRole]
            )

    # ---- Qt model API --------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        return 0 if parent.isValid() else len(self._ids)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = index.row()
        if role == FACE_ID_ROLE:
            return self._ids[row]
        record = self.record(row)
        if record is None:
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(record)
        if role == DECISION_ROLE:
            return record.decision
        if role == Qt.ItemDataRole.ToolTipRole:
            twin = record.duplicate_of
            lines = [
                f"{Path(record.source_path).name}  (face {record.id})",
                f"detector likelihood {record.likelihood:.3f}",
                f"tags ({record.tags_source}): {', '.join(record.tags) or 'none'}",
                f"decision: {record.decision}",
            ]
            if twin is not None:
                lines.append(f"near-duplicate of face {twin}")
            lines.append("K keep · X/Delete reject · Space toggle · Ctrl+Z undo")
            return "\n".join(lines)
        return None

    def crop_image(self, record: FaceRecord) -> Image.Image | None:
        """The crop of ``record`` as RGB, or None when its file is gone or unreadable."""
        assert self._catalogue is not None
        try:
            with Image.open(self._catalogue.dataset_dir / record.crop_file) as image:
                return image.convert("RGB")
        except (OSError, ValueError):
            return None

    def thumbnail(self, record: FaceRecord) -> QPixmap:
        """The crop of ``record`` at the grid's size with its decision drawn on (cached).

        Kept green-framed, rejected darkened and crossed in red, a near-duplicate
        marked by a yellow corner. The marks are drawn with Pillow and the view's
        own C++ delegate paints the result, so scrolling runs no Python per paint.
        """
        pixmap = self._pixmaps.get(record.id)
        if pixmap is not None:
            self._pixmaps.move_to_end(record.id)
            return pixmap
        image = self.crop_image(record)
        if image is None:
            image = Image.new("RGB", (THUMB, THUMB), (128, 128, 128))
        pixmap = pil_to_pixmap(
            decorate(
                image.resize((THUMB, THUMB), Image.Resampling.BICUBIC), record.decision, record.duplicate_of is not None
            )
        )
        self._pixmaps[record.id] = pixmap
        if len(self._pixmaps) > _PIXMAP_CACHE:
            self._pixmaps.popitem(last=False)
        return pixmap
