"""The review grid's model and delegate: many thousands of crops, loaded lazily.

The model holds only the face ids of the current filter; records are fetched
from the catalogue in blocks and thumbnails are read from disk when a row is
first painted, into a bounded cache. ``QListView`` with uniform item sizes only
asks for the rows on screen, so 200k crops cost a list of ints.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from mangagan_app.core.catalogue import Catalogue, FaceRecord

FACE_ID_ROLE = Qt.ItemDataRole.UserRole + 1
DECISION_ROLE = Qt.ItemDataRole.UserRole + 2
DUPLICATE_ROLE = Qt.ItemDataRole.UserRole + 3

_BLOCK = 256
_PIXMAP_CACHE = 3000


class FaceListModel(QAbstractListModel):
    """Face ids of one filter, in order; records and thumbnails fetched on demand."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._catalogue: Catalogue | None = None
        self._ids: list[int] = []
        self._rows: dict[int, int] = {}
        self._records: dict[int, FaceRecord] = {}
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._duplicates: dict[int, int] = {}

    # ---- content -------------------------------------------------------------------
    def set_faces(self, catalogue: Catalogue | None, ids: list[int], duplicates: dict[int, int] | None = None) -> None:
        """Show ``ids`` (records read from ``catalogue``); ``duplicates`` maps a face to its earlier twin."""
        self.beginResetModel()
        self._catalogue = catalogue
        self._ids = list(ids)
        self._rows = {face_id: row for row, face_id in enumerate(self._ids)}
        self._records.clear()
        self._pixmaps.clear()
        self._duplicates = duplicates or {}
        self.endResetModel()

    def face_id(self, row: int) -> int:
        return self._ids[row]

    def row_of(self, face_id: int) -> int | None:
        return self._rows.get(face_id)

    def record(self, row: int) -> FaceRecord | None:
        """The record of ``row``, loading its block of rows on a miss."""
        face_id = self._ids[row]
        if face_id not in self._records and self._catalogue is not None:
            start = row - row % _BLOCK
            if len(self._records) > 20 * _BLOCK:
                self._records.clear()
            self._records.update(self._catalogue.faces(self._ids[start:start + _BLOCK]))
        return self._records.get(face_id)

    def decisions_changed(self, decisions: dict[int, str]) -> None:
        """Repaint rows whose decision was saved elsewhere (the records are immutable, so replace them)."""
        for face_id, decision in decisions.items():
            row = self._rows.get(face_id)
            if row is None:
                continue
            old = self._records.get(face_id)
            if old is not None:
                self._records[face_id] = FaceRecord(**{**old.__dict__, "decision": decision})
            index = self.index(row)
            self.dataChanged.emit(index, index, [DECISION_ROLE, Qt.ItemDataRole.ToolTipRole])

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
            return self._thumbnail(record)
        if role == DECISION_ROLE:
            return record.decision
        if role == DUPLICATE_ROLE:
            return self._duplicates.get(record.id)
        if role == Qt.ItemDataRole.ToolTipRole:
            twin = self._duplicates.get(record.id)
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

    def _thumbnail(self, record: FaceRecord) -> QPixmap:
        pixmap = self._pixmaps.get(record.id)
        if pixmap is None:
            assert self._catalogue is not None
            pixmap = QPixmap(str(self._catalogue.dataset_dir / record.crop_file))
            self._pixmaps[record.id] = pixmap
            if len(self._pixmaps) > _PIXMAP_CACHE:
                self._pixmaps.popitem(last=False)
        else:
            self._pixmaps.move_to_end(record.id)
        return pixmap


class FaceDelegate(QStyledItemDelegate):
    """A thumbnail with its decision shown by a frame: green kept, red crossed rejected."""

    def __init__(self, thumb: int = 96, parent=None):
        super().__init__(parent)
        self.thumb = thumb

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt's name
        return QSize(self.thumb + 10, self.thumb + 10)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        cell = option.rect
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(cell, option.palette.highlight())
        target = QRect(cell.x() + 5, cell.y() + 5, self.thumb, self.thumb)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(target, pixmap)
        decision = index.data(DECISION_ROLE)
        if decision == "keep":
            painter.setPen(QPen(QColor(40, 170, 60), 4))
            painter.drawRect(target.adjusted(2, 2, -2, -2))
        elif decision == "reject":
            painter.fillRect(target, QColor(0, 0, 0, 120))
            painter.setPen(QPen(QColor(220, 40, 40), 4))
            painter.drawRect(target.adjusted(2, 2, -2, -2))
            painter.drawLine(target.topLeft(), target.bottomRight())
            painter.drawLine(target.topRight(), target.bottomLeft())
        if index.data(DUPLICATE_ROLE) is not None:
            painter.setPen(QColor(255, 200, 0))
            painter.drawText(target.adjusted(4, 2, -4, -2), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight,
                             "dup")
        painter.restore()
