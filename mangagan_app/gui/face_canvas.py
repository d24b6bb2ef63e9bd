"""The big face: a 64-px image scaled to fill the space, crisp (nearest) or smooth."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget


def qimage_from_array(pixels: np.ndarray) -> QImage:
    """A QImage owning a copy of (H, W, 3) uint8 RGB ``pixels``."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w, _ = pixels.shape
    return QImage(pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class FaceCanvas(QWidget):
    """Paints the current face zoomed to fit. Nearest scaling uses whole multiples so
    every model pixel is a clean square; smooth scaling fills the space. ``painted``
    fires after each paint (the latency benchmark listens to it)."""

    painted = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._message = ""
        self._caption = ""
        self.smooth = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        # paintEvent fills every pixel: Qt need not repaint the splitter and tab beneath
        # on each new face (it did, and that was most of a slider step's paint time).
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(192, 192)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(512, 512)

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self._message = ""
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def set_message(self, text: str) -> None:
        """Show ``text`` instead of a face (no model, loading, ...)."""
        self._image = None
        self._message = text
        self.update()

    def set_caption(self, text: str) -> None:
        """A line drawn over the bottom of the face (e.g. that a morph frame is shown)."""
        if text != self._caption:
            self._caption = text
            self.update()

    def set_smooth(self, smooth: bool) -> None:
        self.smooth = smooth
        self.update()

    def target_rect(self) -> QRect:
        """Where the face is drawn inside the widget."""
        if self._image is None:
            return QRect()
        side = min(self.width(), self.height()) - 16
        size = self._image.width()
        if not self.smooth and side >= size:
            side = side // size * size
        side = max(side, 1)
        return QRect((self.width() - side) // 2, (self.height() - side) // 2, side, side)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(42, 42, 46))
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
            painter.drawImage(self.target_rect(), self._image)
            if self._caption:
                band = self.rect().adjusted(0, self.height() - 28, 0, 0)
                painter.fillRect(band, QColor(0, 0, 0, 150))
                painter.setPen(QColor(255, 255, 255))
                painter.drawText(band, Qt.AlignmentFlag.AlignCenter, self._caption)
        elif self._message:
            painter.setPen(QColor(220, 220, 225))
            painter.drawText(
                self.rect().adjusted(24, 24, -24, -24),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self._message,
            )
        painter.end()
        self.painted.emit()
